-- post_single.lua: one 200-byte JSON record per keep-alive POST (Sluice: POST /v1/records).
-- usage: wrk -t2 -c50 -d20s --latency -s post_single.lua http://127.0.0.1:PORT/v1/records
--
-- The record is the one bench/pg_insert_jsonb.sql inserts into PostgreSQL. Every response whose
-- status is not 2xx is counted here (wrk's own "status" error counts only >= 400), and the first
-- one is kept for the report. Defining response() makes wrk parse each answer and call Lua: a few
-- per cent of one core of load-generator CPU, the same for every server measured with this script.
-- done() prints one machine-readable line:
--   WRK_RESULT requests=.. non2xx=.. duration_us=.. body_bytes=.. records_per_req=1
--              err_connect=.. err_read=.. err_write=.. err_timeout=.. p50_us=.. p90_us=.. p99_us=..
--              p999_us=.. max_us=..
local record = '{"agent_id":"bench","payload":{"ts":"2026-11-21T04:35:00.123Z","level":"info",'
    .. '"user_id":123456789,"event":"page_view","path":"/products/widget-7",'
    .. '"session":"a1b2c3d4e5f6a7b8","lat_ms":12.5,"ok":true}}'

wrk.method = "POST"
wrk.body = record
wrk.headers["Content-Type"] = "application/json"

-- Each wrk thread has its own Lua state: counters are per-thread globals, summed in done().
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
        .. "records_per_req=1 err_connect=%d err_read=%d err_write=%d err_timeout=%d "
        .. "p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d\n",
        summary.requests, bad, summary.duration, #record,
        summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout,
        latency:percentile(50), latency:percentile(90), latency:percentile(99),
        latency:percentile(99.9), latency.max))
    if sample then
        io.write("WRK_FIRST_NON2XX " .. string.gsub(sample, "%s+", " ") .. "\n")
    end
end
