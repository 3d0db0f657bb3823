-- get_proof.lua: random inclusion or consistency proofs over keep-alive GETs.
-- usage: KIND=inclusion|consistency N=TREE_SIZE STRAND=bench wrk -t1 -c4 -d10s --latency \
--            -s get_proof.lua http://127.0.0.1:PORT
-- inclusion:   GET /v1/strands/STRAND/proof/inclusion?seq=<random < N>&tree_size=N
-- consistency: GET /v1/strands/STRAND/proof/consistency?from=<random 1..N>&to=N
-- done() prints the same WRK_RESULT line as post_single.lua (records_per_req=0).
local kind = os.getenv("KIND") or "inclusion"
local n = tonumber(os.getenv("N") or "1")
local strand = os.getenv("STRAND") or "bench"

local threads = {}
function setup(thread)
    thread:set("seed", #threads + 1)
    table.insert(threads, thread)
end

function init(args)
    non2xx = 0
    math.randomseed(seed * 7919 + os.time())
end

function request()
    local path
    if kind == "consistency" then
        path = string.format("/v1/strands/%s/proof/consistency?from=%d&to=%d", strand,
            math.random(1, n), n)
    else
        path = string.format("/v1/strands/%s/proof/inclusion?seq=%d&tree_size=%d", strand,
            math.random(0, n - 1), n)
    end
    return wrk.format("GET", path)
end

function response(status, headers, body)
    if status ~= 200 then
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
    io.write(string.format("WRK_RESULT requests=%d non2xx=%d duration_us=%d body_bytes=0 "
        .. "records_per_req=0 err_connect=%d err_read=%d err_write=%d err_timeout=%d "
        .. "p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d\n",
        summary.requests, bad, summary.duration,
        summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout,
        latency:percentile(50), latency:percentile(90), latency:percentile(99),
        latency:percentile(99.9), latency.max))
    if sample then
        io.write("WRK_FIRST_NON2XX " .. string.gsub(sample, "%s+", " ") .. "\n")
    end
end
