-- post_boboyka.lua: one Boboyka event per keep-alive POST /v1/boboyka/ingest (an agent_health
-- snapshot like the seed's, ~190 bytes). Counts non-2xx answers, and 2xx answers whose dual_write
-- says "ok":false (a failed mirror write), like post_single.lua; done() prints one line:
--   WRK_RESULT requests=.. non2xx=.. mirror_failed=.. duration_us=.. p50_us=.. p90_us=..
--              p99_us=.. p999_us=.. max_us=.. err_connect=.. err_read=.. err_write=.. err_timeout=..
-- usage: wrk -t2 -c50 -d20s --latency -s post_boboyka.lua http://127.0.0.1:PORT/v1/boboyka/ingest
wrk.method = "POST"
wrk.body = '{"record_type":"agent_health","data":{"agent_id":"boboyka_builder","status":"healthy",'
    .. '"cpu_pct":23.4,"memory_mb":512,"checked_at_ms":1747000000000}}'
wrk.headers["Content-Type"] = "application/json"

local threads = {}
function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    non2xx = 0
    mirror_failed = 0
end

function response(status, headers, body)
    if status < 200 or status > 299 then
        non2xx = non2xx + 1
        if first_bad == nil then
            first_bad = status .. " " .. string.sub(body or "", 1, 300)
        end
    elseif string.find(body, '"ok":false', 1, true) then
        mirror_failed = mirror_failed + 1
        if first_bad == nil then
            first_bad = status .. " " .. string.sub(body or "", 1, 300)
        end
    end
end

function done(summary, latency, requests)
    local bad, mf, sample = 0, 0, nil
    for _, t in ipairs(threads) do
        bad = bad + (t:get("non2xx") or 0)
        mf = mf + (t:get("mirror_failed") or 0)
        sample = sample or t:get("first_bad")
    end
    io.write(string.format("WRK_RESULT requests=%d non2xx=%d mirror_failed=%d duration_us=%d "
        .. "p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d err_connect=%d err_read=%d "
        .. "err_write=%d err_timeout=%d\n",
        summary.requests, bad, mf, summary.duration, latency:percentile(50),
        latency:percentile(90), latency:percentile(99), latency:percentile(99.9), latency.max,
        summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout))
    if sample then
        io.write("WRK_FIRST_BAD " .. string.gsub(sample, "%s+", " ") .. "\n")
    end
end
