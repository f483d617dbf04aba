-- wrk script for benches/http_rpc.sh: POST /api/nostr sign_event with the token in TOKEN.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
wrk.body = '{"method":"sign_event","params":["{\\"kind\\":1,\\"content\\":\\"benchmark note with a realistic amount of text in it\\",\\"tags\\":[]}"]}'

-- wrk counts answers other than 2xx/3xx; the run must have none.
done = function(summary, latency, requests)
  io.write(string.format("non-200: %d\n", summary.errors.status))
end
