-- REGISTER load (bench/register.sh): save every REGISTER to usrloc (no authentication), answer
-- anything else 404. Runs unchanged on Kamailio 5.6 (app_lua) and Starling.
function ksr_request_route()
  if KSR.is_REGISTER() then
    KSR.registrar.save("location", 0)
    return
  end
  KSR.sl.sl_send_reply(404, "Not here")
end
