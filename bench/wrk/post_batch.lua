-- post_batch.lua: BATCH (default 1000) records as NDJSON per keep-alive POST
-- (Sluice: POST /v1/records/batch, Content-Type application/x-ndjson).
-- usage: BATCH=1000 wrk -t2 -c50 -d20s --latency -s post_batch.lua http://127.0.0.1:PORT/v1/records/batch
--
-- Each line is {"payload":{...}} with the payload of post_single.lua (user_id differs per line,
-- same length), so a line is 181 bytes plus the newline. records/s = 2xx requests/s * BATCH.
-- Non-2xx answers are counted as in post_single.lua. done() prints one line:
--   WRK_RESULT requests=.. non2xx=.. duration_us=.. body_bytes=.. records_per_req=.. err_*=..
--              p50_us=.. p90_us=.. p99_us=.. p999_us=.. max_us=..
local n = tonumber(os.getenv("BATCH") or "1000")
local lines = {}
for i = 1, n do
    lines[i] = string.format('{"payload":{"ts":"2026-11-21T04:35:00.123Z","level":"info",'
        .. '"user_id":%09d,"event":"page_view","path":"/products/widget-7",'
        .. '"session":"a1b2c3d4e5f6a7b8","lat_ms":12.5,"ok":true}}\n', 100000000 + i)
end
local body = table.concat(lines)

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/x-ndjson"

local threads = {}
function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    non2xx = 0
end

function response(status, headers, body)
    if status < 200 or status > 299 then
        non2xx = non2xx + 1
        if first_bad == nil then
            first_bad = status .. " " .. string.sub(body or "", 1, 300)
        end
    end
end

function done(summary, latency, requests)
    local bad, sample = 0, nil
    for _, t in ipairs(threads) do
        bad = bad + (t:get("non2xx") or 0)
        sample = sample or t:get("first_bad")
    end
    io.write(string.format("WRK_RESULT requests=%d non2xx=%d duration_us=%d body_bytes=%d "
        .. "records_per_req=%d err_connect=%d err_read=%d err_write=%d err_timeout=%d "
        .. "p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d\n",
        summary.requests, bad, summary.duration, #body, n,
        summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout,
        latency:percentile(50), latency:percentile(90), latency:percentile(99),
        latency:percentile(99.9), latency.max))
    if sample then
        io.write("WRK_FIRST_NON2XX " .. string.gsub(sample, "%s+", " ") .. "\n")
    end
end
