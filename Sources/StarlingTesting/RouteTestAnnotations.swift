extension RouteTestRunner {
    /// The file `starling api --luals DIR` writes for route test files.
    public static let luaLSFileName = "starling_test.lua"

    /// LuaLS annotations for the route test DSL (the globals the prelude defines).
    public static let luaLSAnnotations = #"""
        ---@meta
        -- The route test DSL of `starling test`, for the Lua language server. Written by
        -- `starling api --luals DIR`; do not edit. See README.md, "Route tests".

        ---@class StarlingSent
        ---@field to string destination "ip:port"
        ---@field proto string "udp", ...
        ---@field text string the datagram
        ---@field request boolean|nil true for a request, false for a reply, nil if it does not parse
        ---@field method string|nil
        ---@field ruri string|nil
        ---@field status integer|nil
        ---@field reason string|nil
        ---@field headers {name: string, canon: string|nil, value: string}[]
        ---@field body string|nil

        ---@class StarlingResult
        ---@field status "routed"|"rejected"|"invalid"|"unparsable"|"keepalive"
        ---@field outcome "ok"|"exited"|"missing"|"error"|"budget"|"memory"|nil
        ---@field error string|nil the script's Lua error
        ---@field rejected integer|nil status the core answered an invalid request with
        ---@field dropped boolean KSR.x.drop() was called
        ---@field sent StarlingSent[] every datagram the router sent, in order
        ---@field source string where the message came from
        ---@field message string the message as sent to the router

        ---@class StarlingRequestOptions
        ---@field ruri string|nil
        ---@field via string|false|nil
        ---@field max_forwards string|integer|false|nil
        ---@field from string|false|nil
        ---@field to string|false|nil
        ---@field call_id string|false|nil
        ---@field cseq string|integer|false|nil
        ---@field contact string|false|nil
        ---@field expires string|integer|false|nil
        ---@field headers table<string, string|false>|string[][]|nil
        ---@field body string|nil
        ---@field content_type string|nil

        ---@class StarlingHeaderChecks
        ---@field has_header string|string[]|nil
        ---@field lacks_header string|string[]|nil
        ---@field headers table<string, string|boolean>|nil

        ---@class StarlingForwardOptions: StarlingHeaderChecks
        ---@field to string|nil "ip:port"
        ---@field ruri string|nil
        ---@field method string|nil
        ---@field proto string|nil

        ---@class StarlingReplyOptions: StarlingHeaderChecks
        ---@field reason string|nil
        ---@field to string|nil

        ---Declares a test; it runs with a freshly loaded script.
        ---@param name string
        ---@param fn fun()
        function test(name, fn) end

        ---Routes a message (raw SIP text, a builder's result, or file(...)) through the script.
        ---@param msg string
        ---@param opts {from: string}|nil
        ---@return StarlingResult
        function send(msg, opts) end

        ---Sends a reply to a forwarded request (or a request's text) through ksr_reply_route.
        ---@param status integer
        ---@param to StarlingResult|string
        ---@param opts {reason: string, headers: table, from: string, to_tag: string}|nil
        ---@return StarlingResult
        function reply(status, to, opts) end

        ---@param method string
        ---@param o StarlingRequestOptions|nil
        ---@return string
        function request(method, o) end
        ---@param o StarlingRequestOptions|nil
        ---@return string
        function invite(o) end
        ---@param o StarlingRequestOptions|nil
        ---@return string
        function options(o) end
        ---@param o StarlingRequestOptions|nil
        ---@return string
        function register(o) end
        ---@param o StarlingRequestOptions|nil
        ---@return string
        function bye(o) end
        ---@param o StarlingRequestOptions|nil
        ---@return string
        function message(o) end
        ---@param o StarlingRequestOptions|nil
        ---@return string
        function ack(o) end
        ---@param o StarlingRequestOptions|nil
        ---@return string
        function cancel(o) end

        ---The contents of a file, relative to the test file.
        ---@param path string
        ---@return string
        function file(path) end

        ---Name resolution for the script: { ["pbx.example.com"] = "127.0.0.1" } ("*": any other name).
        ---@param t table<string, string>
        function hosts(t) end
        ---[define] entries for KSR.kx.ifdef/get_def (false removes one).
        ---@param t table<string, string|boolean|number>
        function defines(t) end
        ---Names the router treats as itself.
        ---@param t string[]
        function aliases(t) end
        ---The router's own address (default "127.0.0.1:5060").
        ---@param addr string
        function listen(addr) end
        ---A stubbed http_async_client answer for URLs starting with t.url, after t.delay ms of the
        ---router's clock (status 0: no answer, the callback sees TIMEOUT).
        ---@param t { url: string, status?: integer, body?: string, delay?: integer }
        function http(t) end
        ---[core] async_io for the routes tested: routes run as coroutines, stubbed http_client calls wait.
        ---@param on? boolean default true
        ---@param max_pending? integer async_max_pending (default 1000)
        function async_io(on, max_pending) end
        ---Moves the router's clock on (timers, async sleeps, stubbed HTTP answers); what was sent meanwhile.
        ---@param ms integer
        ---@return StarlingResult
        function wait(ms) end

        ---A $var of the script after the last send.
        ---@param name string "$var(x)" or "x"
        ---@return string|integer|nil
        function var(name) end

        expect = {}
        ---@param r StarlingResult
        ---@param status integer
        ---@param o string|StarlingReplyOptions|nil
        ---@return StarlingSent
        function expect.reply(r, status, o) end
        ---@param r StarlingResult
        ---@param o StarlingForwardOptions|nil
        ---@return StarlingSent
        function expect.forward(r, o) end
        ---@param r StarlingResult
        function expect.dropped(r) end
        ---@param r StarlingResult
        function expect.nothing_sent(r) end
        ---@param r StarlingResult
        function expect.no_error(r) end
        ---@param r StarlingResult
        ---@param pattern string|nil
        function expect.script_error(r, pattern) end
        ---@param name string
        ---@param want any
        function expect.var(name, want) end
        ---@param got any
        ---@param want any
        ---@param what string|nil
        function expect.equal(got, want, what) end
        ---@param v any
        ---@param what string|nil
        function expect.truthy(v, what) end
        """#
}
