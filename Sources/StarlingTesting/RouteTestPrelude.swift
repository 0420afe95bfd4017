/// The route test DSL, loaded into each test state before the test file (see README "Route tests").
let routeTestPrelude = #"""
-- The route test DSL (starling test). Runs in the test state, never in the script's state.
local native = KSR.starling
KSR = nil
KSRVERSION = nil
package.loaded.KSR = nil

local S = {}
__starling = S
local tests = {}
local current_file = "?"
local counter = 0

-- ---- Failures ---------------------------------------------------------------------------------

local Failure = {}
Failure.__index = Failure
Failure.__tostring = function(f) return (f.where or "?") .. ": " .. f.message end

-- file:line of the innermost frame in the test file (else in any Lua file other than this prelude).
local function where()
  local fallback
  local level = 2
  while true do
    local info = debug.getinfo(level, "Sl")
    if not info then break end
    if info.source == "@" .. current_file then return current_file .. ":" .. info.currentline end
    if not fallback and info.what ~= "C" and info.source:sub(1, 1) == "@" then
      fallback = info.source:sub(2) .. ":" .. info.currentline
    end
    level = level + 1
  end
  return fallback
end

local function fail(expected, got)
  local message = "expected: " .. expected
  if got ~= nil then message = message .. "\n     got: " .. got end
  error(setmetatable({ where = where(), message = message }, Failure), 0)
end

local function usage(message)
  error(setmetatable({ where = where(), message = message }, Failure), 0)
end

-- ---- Messages ---------------------------------------------------------------------------------

local function lines_of(text)
  local lines = {}
  for line in (text .. "\n"):gmatch("(.-)\n") do lines[#lines + 1] = line end
  return lines
end

-- LF-only text (a [[long string]] in a test): indentation removed, CRLF line ends, Content-Length
-- set to the body's length. Text that already has CRLF is sent byte for byte.
local function normalize(text)
  if text:find("\r\n", 1, true) then return text end
  local lines = lines_of(text)
  while #lines > 0 and lines[1]:match("^%s*$") do table.remove(lines, 1) end
  local indent
  for _, l in ipairs(lines) do
    if l:match("%S") then
      local ws = l:match("^[ \t]*")
      if indent == nil or #ws < #indent then indent = ws end
    end
  end
  indent = indent or ""
  for i, l in ipairs(lines) do
    if l:sub(1, #indent) == indent then lines[i] = l:sub(#indent + 1) end
  end
  local head, body = {}, {}
  local in_body = false
  for _, l in ipairs(lines) do
    if in_body then body[#body + 1] = l
    elseif l:match("^%s*$") then in_body = true
    else head[#head + 1] = l end
  end
  while #body > 0 and body[#body]:match("^%s*$") do table.remove(body) end
  local body_text = #body > 0 and (table.concat(body, "\r\n") .. "\r\n") or ""
  local out, has_cl = {}, false
  for _, l in ipairs(head) do
    local name = l:match("^([%w%-%.!%%%*_%+`'~]+)%s*:")
    if name and (name:lower() == "content-length" or name:lower() == "l") then
      out[#out + 1] = name .. ": " .. #body_text
      has_cl = true
    else
      out[#out + 1] = l
    end
  end
  if not has_cl then out[#out + 1] = "Content-Length: " .. #body_text end
  return table.concat(out, "\r\n") .. "\r\n\r\n" .. body_text
end

local function header_list(h)
  local list = {}
  if h == nil then return list end
  if #h > 0 then
    for _, p in ipairs(h) do list[#list + 1] = { p[1], p[2] } end
  else
    local names = {}
    for k in pairs(h) do names[#names + 1] = k end
    table.sort(names)
    for _, k in ipairs(names) do list[#list + 1] = { k, h[k] } end
  end
  return list
end

local defaults = {
  { "via", "Via" }, { "max_forwards", "Max-Forwards" }, { "from", "From" }, { "to", "To" },
  { "call_id", "Call-ID" }, { "cseq", "CSeq" }, { "contact", "Contact" }, { "expires", "Expires" },
}

-- A request with default Via, Max-Forwards, From, To, Call-ID, CSeq (and Contact for INVITE and
-- REGISTER). o: ruri, via, max_forwards, from, to, call_id, cseq, contact, expires (false removes
-- one), headers = { ["X-Foo"] = "1" } or { {"X-Foo", "1"}, ... }, body, content_type.
function request(method, o)
  if type(method) ~= "string" then usage("request(method, {...}): method must be a string") end
  o = o or {}
  counter = counter + 1
  local n = counter
  local ruri = o.ruri or (method == "REGISTER" and "sip:example.com" or "sip:bob@example.com")
  local v = {
    via = "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-starling-test-" .. n .. ";rport",
    max_forwards = "70",
    from = "<sip:alice@example.com>;tag=from-" .. n,
    to = method == "REGISTER" and "<sip:alice@example.com>" or ("<" .. ruri .. ">"),
    call_id = "test-" .. n .. "@192.0.2.10",
    cseq = "1 " .. method,
    contact = (method == "INVITE" or method == "REGISTER") and "<sip:alice@192.0.2.10:5060>" or nil,
  }
  for _, d in ipairs(defaults) do
    local key = d[1]
    if o[key] == false then v[key] = nil
    elseif o[key] ~= nil then v[key] = tostring(o[key]) end
  end
  if type(o.cseq) == "number" then v.cseq = o.cseq .. " " .. method end
  local hs = {}
  for _, d in ipairs(defaults) do
    if v[d[1]] then hs[#hs + 1] = { d[2], v[d[1]] } end
  end
  for _, p in ipairs(header_list(o.headers)) do
    local replaced = false
    for _, h in ipairs(hs) do
      if h[1]:lower() == tostring(p[1]):lower() then h[2] = p[2]; replaced = true end
    end
    if not replaced then hs[#hs + 1] = { tostring(p[1]), p[2] } end
  end
  local body = o.body or ""
  if #body > 0 then hs[#hs + 1] = { "Content-Type", o.content_type or "application/sdp" } end
  local out = { method .. " " .. ruri .. " SIP/2.0" }
  for _, h in ipairs(hs) do
    if h[2] ~= false then out[#out + 1] = h[1] .. ": " .. tostring(h[2]) end
  end
  out[#out + 1] = "Content-Length: " .. #body
  return table.concat(out, "\r\n") .. "\r\n\r\n" .. body
end

function invite(o) return request("INVITE", o) end
function options(o) return request("OPTIONS", o) end
function register(o) return request("REGISTER", o) end
function bye(o) return request("BYE", o) end
function message(o)
  o = o or {}
  if o.body and not o.content_type then o.content_type = "text/plain" end
  return request("MESSAGE", o)
end
function ack(o) return request("ACK", o) end
function cancel(o) return request("CANCEL", o) end

-- The contents of a file, relative to the test file's directory.
function file(path)
  local full = path
  if path:sub(1, 1) ~= "/" then
    local dir = current_file:match("^(.*)/[^/]*$")
    if dir then full = dir .. "/" .. path end
  end
  local f, err = io.open(full, "rb")
  if not f then usage("file(): " .. tostring(err)) end
  local text = f:read("a")
  f:close()
  return text
end

-- ---- Sending ----------------------------------------------------------------------------------

local function summary(m)
  if m.request == nil then return "unparsable datagram to " .. m.to end
  if m.request then return m.method .. " " .. m.ruri .. " to " .. m.to end
  return "reply " .. m.status .. " " .. m.reason .. " to " .. m.to
end

-- What a result shows: what was sent and how the route ended.
local function describe(r)
  local parts = {}
  for _, m in ipairs(r.sent) do parts[#parts + 1] = summary(m) end
  local s = #parts > 0 and table.concat(parts, "; ") or "nothing sent"
  if r.status == "rejected" then s = s .. " (rejected by the core: " .. r.rejected .. ")"
  elseif r.status ~= "routed" then s = s .. " (" .. r.status .. " message, not routed)"
  elseif r.outcome == "error" then s = s .. " (script error: " .. tostring(r.error) .. ")"
  elseif r.dropped then s = s .. " (KSR.x.drop)"
  elseif r.outcome == "exited" then s = s .. " (KSR.x.exit)"
  elseif r.outcome ~= "ok" then s = s .. " (route " .. r.outcome .. ")" end
  return s
end

local Result = {}
Result.__index = Result
Result.__tostring = describe

-- Routes one message through the script: a string (raw SIP, or a builder's result).
-- o.from = "ip:port" sets the source (default 192.0.2.10:5060).
function send(msg, o)
  if type(msg) ~= "string" then usage("send(message): message must be a string (raw SIP or invite{...})") end
  o = o or {}
  local text = normalize(msg)
  local lit = native.send(text, o.from and tostring(o.from) or nil)
  local r = load("return " .. lit, "=starling-result", "t", {})()
  if r.script_error then usage("the script does not load: " .. r.script_error) end
  if r.usage_error then usage(r.usage_error) end
  r.message = text
  return setmetatable(r, Result)
end

local reasons = {
  [100] = "Trying", [180] = "Ringing", [181] = "Call Is Being Forwarded", [183] = "Session Progress",
  [200] = "OK", [202] = "Accepted", [301] = "Moved Permanently", [302] = "Moved Temporarily",
  [400] = "Bad Request", [401] = "Unauthorized", [403] = "Forbidden", [404] = "Not Found",
  [407] = "Proxy Authentication Required", [408] = "Request Timeout", [480] = "Temporarily Unavailable",
  [481] = "Call/Transaction Does Not Exist", [483] = "Too Many Hops", [486] = "Busy Here",
  [487] = "Request Terminated", [488] = "Not Acceptable Here", [500] = "Server Internal Error",
  [503] = "Service Unavailable", [603] = "Decline",
}

local function last_request(r)
  for i = #r.sent, 1, -1 do
    if r.sent[i].request then return r.sent[i] end
  end
end

-- A response to a request, sent back through the script (ksr_reply_route, then the relay).
-- to: a send() result (its forwarded request; the reply comes from where it was sent) or a
-- request's text. o: reason, headers, from, to_tag.
function reply(status, to, o)
  o = o or {}
  if type(status) ~= "number" then usage("reply(status, request): status must be a number") end
  local text, from
  if type(to) == "table" and to.sent then
    local m = last_request(to)
    if not m then usage("reply(): nothing was forwarded (" .. describe(to) .. ")") end
    text, from = m.text, m.to
  elseif type(to) == "string" then
    text = normalize(to)
  else
    usage("reply(status, request): request must be a send() result or a request's text")
  end
  from = o.from or from
  local keep = { via = true, v = true, from = true, f = true, to = true, t = true, ["call-id"] = true,
                 i = true, cseq = true, ["record-route"] = true }
  local out = { "SIP/2.0 " .. status .. " " .. (o.reason or reasons[status] or "Reply") }
  local lines = lines_of(text:gsub("\r\n", "\n"))
  for k = 2, #lines do
    local l = lines[k]
    if l == "" then break end
    local name, value = l:match("^([^:%s]+)%s*:%s*(.-)%s*$")
    if name and keep[name:lower()] then
      local lname = name:lower()
      if (lname == "to" or lname == "t") and status > 100 and not value:find(";%s*tag=") then
        value = value .. ";tag=" .. (o.to_tag or "reply-tag")
      end
      out[#out + 1] = name .. ": " .. value
    end
  end
  for _, p in ipairs(header_list(o.headers)) do out[#out + 1] = p[1] .. ": " .. tostring(p[2]) end
  out[#out + 1] = "Content-Length: 0"
  return send(table.concat(out, "\r\n") .. "\r\n\r\n", { from = from })
end

-- ---- Settings ---------------------------------------------------------------------------------

local function setting(kind, key, value)
  local err = native.set(kind, key, value)
  if err ~= "" then usage(err) end
end

-- Name resolution: { ["pbx.example.com"] = "127.0.0.1" }; "*" resolves every other name.
function hosts(t)
  for k, v in pairs(t) do setting("host", tostring(k), tostring(v)) end
end

-- [define] entries for KSR.kx.ifdef / get_def: { TESTING = true, PBX = "sip:127.0.0.1:5080" }.
-- A false value removes one.
function defines(t)
  for k, v in pairs(t) do
    if v == false then setting("undefine", tostring(k), "")
    else setting("define", tostring(k), v == true and "" or tostring(v)) end
  end
end

-- Extra names the router treats as itself (KSR.is_myself*).
function aliases(t)
  for _, v in ipairs(t) do setting("alias", tostring(v), "") end
end

-- The router's own address (default 127.0.0.1:5060).
function listen(addr) setting("local", tostring(addr), "") end

-- A stubbed http_async_client answer (and, with async_io, http_client's): queries whose URL starts with t.url are not sent; after
-- t.delay ms (default 0) of the router's clock (see wait) the callback gets t.status (default 200)
-- and t.body. status = 0: the service never answers ($http_ok 0, $http_err "TIMEOUT" after delay).
function http(t)
  if type(t) ~= "table" or type(t.url) ~= "string" then usage("http{url = ..., status = ..., body = ..., delay = ms}") end
  setting("http", t.url, tostring(math.tointeger(t.delay or 0) or -1) .. "|" .. tostring(math.tointeger(t.status or 200) or -1)
    .. "|" .. tostring(t.body or ""))
end

-- [core] async_io for the routes tested (default off): routes run as coroutines, and http_client
-- calls (stubbed with http{...}) wait without blocking; send() then returns status "waiting" and
-- wait(ms) resumes the route. max_pending is async_max_pending (default 1000).
function async_io(on, max_pending)
  setting("async_io", on == false and "0" or "1", tostring(math.tointeger(max_pending or 1000) or -1))
end

-- Moves the router's clock on by ms: transaction timers, async.route sleeps, stubbed HTTP answers
-- and the routes they resume run. Returns what was sent meanwhile (a result, as send's).
function wait(ms)
  if type(ms) ~= "number" then usage("wait(ms): ms must be a number") end
  local lit = native.wait(tostring(math.floor(ms)))
  local r = load("return " .. lit, "=starling-result", "t", {})()
  if r.script_error then usage("the script does not load: " .. r.script_error) end
  if r.usage_error then usage(r.usage_error) end
  r.message = ""
  return setmetatable(r, Result)
end

-- A $var of the script after the last send (nil if unset).
function var(name)
  return load("return " .. native.var(tostring(name)), "=starling-var", "t", {})()
end

-- ---- Expectations -----------------------------------------------------------------------------

local function as_list(v)
  if v == nil then return {} end
  if type(v) == "table" then return v end
  return { v }
end

local function header_values(m, name)
  local want, vals = name:lower(), {}
  for _, h in ipairs(m.headers or {}) do
    if h.name:lower() == want or (h.canon and h.canon:lower() == want) then vals[#vals + 1] = h.value end
  end
  return vals
end

local function check_headers(m, o, what)
  for _, name in ipairs(as_list(o.has_header)) do
    if #header_values(m, name) == 0 then fail(what .. " with a " .. name .. " header", "no " .. name .. " header in " .. summary(m)) end
  end
  for _, name in ipairs(as_list(o.lacks_header)) do
    local vals = header_values(m, name)
    if #vals > 0 then fail(what .. " without a " .. name .. " header", name .. ": " .. vals[1]) end
  end
  for name, want in pairs(o.headers or {}) do
    local vals = header_values(m, name)
    if want == false then
      if #vals > 0 then fail(what .. " without a " .. name .. " header", name .. ": " .. vals[1]) end
    elseif want == true then
      if #vals == 0 then fail(what .. " with a " .. name .. " header", "no " .. name .. " header") end
    else
      local found = false
      for _, v in ipairs(vals) do if v == tostring(want) then found = true end end
      if not found then
        fail(what .. " with " .. name .. ": " .. tostring(want),
             #vals > 0 and (name .. ": " .. table.concat(vals, " | ")) or ("no " .. name .. " header"))
      end
    end
  end
end

local function check_result(r, fname)
  if type(r) ~= "table" or r.sent == nil then usage(fname .. ": the first argument must be a send() result") end
end

local function norm_addr(a)
  a = tostring(a):gsub("^sips?:", ""):gsub("^udp:", "")
  if not a:find(":%d+$") then a = a .. ":5060" end
  return a
end

expect = {}

-- A reply with this status was sent by the router (or relayed). o: a reason string, or
-- { reason, to, has_header, lacks_header, headers = { name = value | true | false } }.
function expect.reply(r, status, o)
  check_result(r, "expect.reply")
  if type(o) == "string" then o = { reason = o } end
  o = o or {}
  local what = "reply " .. tostring(status) .. (o.to and (" to " .. o.to) or "")
  local m
  for _, s in ipairs(r.sent) do
    if s.request == false and s.status == status and (o.to == nil or s.to == norm_addr(o.to)) then m = s; break end
  end
  if not m then fail(what, describe(r)) end
  if o.reason and m.reason ~= o.reason then fail(what .. " " .. o.reason, "reply " .. m.status .. " " .. m.reason) end
  check_headers(m, o, what)
  return m
end

-- A request was forwarded. o: to = "ip:port", ruri, method, proto, has_header, lacks_header,
-- headers = { name = value | true | false }.
function expect.forward(r, o)
  check_result(r, "expect.forward")
  o = o or {}
  local what = "a request forwarded" .. (o.to and (" to " .. norm_addr(o.to)) or "")
  local m
  for _, s in ipairs(r.sent) do
    if s.request and (o.to == nil or s.to == norm_addr(o.to)) and (o.method == nil or s.method == o.method) then m = s; break end
  end
  if not m then fail(what, describe(r)) end
  if o.ruri and m.ruri ~= o.ruri then fail(what .. " with R-URI " .. o.ruri, "R-URI " .. m.ruri) end
  if o.proto and m.proto ~= o.proto:lower() then fail(what .. " over " .. o.proto, m.proto) end
  check_headers(m, o, what)
  return m
end

-- Nothing was sent and the route ended the message: KSR.x.drop(), KSR.x.exit(), or the core
-- discarded it.
function expect.dropped(r)
  check_result(r, "expect.dropped")
  if #r.sent > 0 or (r.status == "routed" and not r.dropped and r.outcome ~= "exited") then
    fail("the message dropped", describe(r))
  end
end

-- No datagram was sent, however the route ended.
function expect.nothing_sent(r)
  check_result(r, "expect.nothing_sent")
  if #r.sent > 0 then fail("nothing sent", describe(r)) end
end

-- The route ran without a Lua error.
function expect.no_error(r)
  check_result(r, "expect.no_error")
  if r.outcome == "error" then fail("no script error", r.error) end
end

-- The route raised a Lua error (matching the Lua pattern, when given).
function expect.script_error(r, pattern)
  check_result(r, "expect.script_error")
  if r.outcome ~= "error" then fail("a script error", describe(r)) end
  if pattern and not tostring(r.error):find(pattern) then fail("a script error matching " .. pattern, r.error) end
end

local function show(v)
  if type(v) == "string" then return string.format("%q", v) end
  return tostring(v)
end

-- A $var of the script after the last send: expect.var("$var(x)", 1).
function expect.var(name, want)
  local got = var(name)
  if got ~= want then fail(tostring(name) .. " = " .. show(want), show(got)) end
end

function expect.equal(got, want, what)
  if got ~= want then fail((what and (what .. " = ") or "") .. show(want), show(got)) end
end

function expect.truthy(v, what)
  if not v then fail(what or "a true value", show(v)) end
end

-- ---- Tests ------------------------------------------------------------------------------------

function test(name, fn)
  if type(name) ~= "string" or type(fn) ~= "function" then usage("test(name, function() ... end)") end
  tests[#tests + 1] = { name = name, fn = fn }
  native.set("count", tostring(#tests), "")
end

function S.begin_file(path) current_file = path end

local function handler(e)
  if getmetatable(e) == Failure then return e end
  local msg = tostring(e)
  local loc = where()
  -- a runtime error message already starts with file:line
  local prefix = loc and (loc .. ": ")
  if prefix and msg:sub(1, #prefix) == prefix then msg = msg:sub(#prefix + 1) end
  return setmetatable({ where = loc, message = "error: " .. msg }, Failure)
end

function S.run(i)
  local t = tests[i]
  native.begin_test(t.name)
  local ok, f = xpcall(t.fn, handler)
  if ok then native.report(t.name, "ok", "", "")
  else native.report(t.name, "fail", f.where or "", f.message) end
end
"""#
