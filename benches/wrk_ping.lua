-- wrk script for benches/http_rpc.sh: POST /api/nostr `ping` with the token in TOKEN. The
-- same HTTP, token and JSON path as sign_event, with no engine call and no signature.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
wrk.body = '{"method":"ping","params":[]}'

done = function(summary, latency, requests)
  io.write(string.format("non-200: %d\n", summary.errors.status))
end
