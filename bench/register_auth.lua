-- REGISTER load with digest authentication (bench/register.sh, AUTH=1): as Kamailio's example
-- KEMI script, auth_check against the subscriber table (realm = From domain), a 401 challenge
-- when it fails, then save to usrloc; anything else 404. Runs unchanged on Kamailio 5.6 (app_lua)
-- and Starling.
function ksr_request_route()
  if KSR.is_REGISTER() then
    local realm = KSR.pv.get("$fd")
    local rc = KSR.auth_db.auth_check(realm, "subscriber", 1)
    if rc < 0 then
      KSR.auth.auth_challenge(realm, 0)
      return
    end
    KSR.registrar.save("location", 0)
    return
  end
  KSR.sl.sl_send_reply(404, "Not here")
end
