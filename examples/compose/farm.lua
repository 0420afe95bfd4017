-- A proxy in front of a PBX farm (compose.yaml): calls spread over the PBXs of dispatcher set 1
-- (round-robin), a PBX that fails (5xx, 408 or no answer) is marked and the call retried on the next.
-- KSR.dispatcher follows Kamailio 5.6; the list comes from [modparam.dispatcher] list_file
-- (STARLING_MODPARAM_DISPATCHER_LIST_FILE in compose.yaml).

function ksr_request_route()
	if KSR.maxfwd.process_maxfwd(10) < 0 then
		KSR.sl.sl_send_reply(483, "Too Many Hops")
		return
	end
	if KSR.is_OPTIONS() and KSR.is_myself_ruri() then
		KSR.sl.sl_send_reply(200, "OK")
		return
	end
	-- In-dialog requests follow their Route set.
	if KSR.siputils.has_totag() > 0 then
		if KSR.rr.loose_route() > 0 then
			KSR.tm.t_relay()
		elseif KSR.is_ACK() then
			if KSR.tm.t_check_trans() > 0 then KSR.tm.t_relay() end
		else
			KSR.sl.sl_send_reply(404, "Not here")
		end
		return
	end
	if KSR.is_CANCEL() then
		if KSR.tm.t_check_trans() > 0 then KSR.tm.t_relay() end
		return
	end
	KSR.rr.record_route()
	-- Set 1, algorithm 4 (round-robin); failover destinations kept for ds_next_dst.
	if KSR.dispatcher.ds_select_dst(1, 4) < 0 then
		KSR.sl.sl_send_reply(503, "No PBX available")
		return
	end
	KSR.tm.t_on_failure("ksr_failure_pbx")
	KSR.tm.t_relay()
end

function ksr_failure_pbx()
	if KSR.tm.t_is_canceled() > 0 then return end
	local status = KSR.pv.get("$T_reply_code")
	if status == 408 or (status ~= nil and status >= 500) then
		KSR.dispatcher.ds_mark_dst("ip")
		if KSR.dispatcher.ds_next_dst() > 0 then
			KSR.tm.t_on_failure("ksr_failure_pbx")
			KSR.tm.t_relay()
		end
	end
end
