-- SwiftDeploy's router: picks a track per request and a replica per attempt from
-- routes kept in a shared dict, so weights and endpoints change without a reload
-- (the way ingress-nginx's balancer.lua does it).
--
-- The health checker is hand-written because lua-resty-upstream-healthcheck only
-- checks static `upstream` blocks, and our peers exist only in the shared dict.
local cjson = require "cjson.safe"
local balancer = require "ngx.balancer"

local M = {}
local dict = ngx.shared.swiftdeploy
local config = {}
local cache = { version = -1, routes = nil }
local EMPTY = { weights = { canary = 0 }, endpoints = { stable = {}, canary = {} } }
-- Same bounds as the demo service's histogram, so both sides read alike.
local BUCKETS = { 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3,
                  0.4, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10 }
-- Seconds of per-second history kept per track, so a one-shot CLI can read the last
-- minutes of traffic exactly (`metrics`, `status`, a rollout's reference window).
local HISTORY_S = 900
-- Most seconds one /history request may sum (a bound on the admin's work).
local HISTORY_MAX_SPAN = 3600

function M.configure(options)
    config = options
end

local function valid_endpoint(addr)
    return type(addr) == "string" and addr:match("^[%w%.%-]+:%d+$") ~= nil
end

local function validate(routes)
    if type(routes) ~= "table" or type(routes.weights) ~= "table"
        or type(routes.endpoints) ~= "table" then
        return "routes need weights and endpoints"
    end
    local w = routes.weights.canary
    if type(w) ~= "number" or w < 0 or w > 100 or w ~= math.floor(w) then
        return "weights.canary must be an integer 0-100"
    end
    local rollout = routes.rollout
    if rollout ~= nil and (type(rollout) ~= "string" or #rollout > 64
        or not rollout:match("^[%w%._%-]*$")) then
        return "rollout must be up to 64 letters, digits, '.', '_' or '-'"
    end
    for _, track in ipairs({ "stable", "canary" }) do
        local list = routes.endpoints[track]
        if type(list) ~= "table" then
            return "endpoints." .. track .. " must be a list"
        end
        for _, addr in ipairs(list) do
            if not valid_endpoint(addr) then
                return "bad endpoint " .. tostring(addr)
            end
        end
    end
    return nil
end

local function store(raw)
    local routes = cjson.decode(raw)
    local problem = validate(routes)
    if problem then
        return problem
    end
    dict:set("routes", raw)
    dict:incr("routes_version", 1, 0)
    return nil
end

local function routes()
    local version = dict:get("routes_version") or 0
    if version ~= cache.version then
        local raw = dict:get("routes")
        cache.routes = (raw and cjson.decode(raw)) or EMPTY
        cache.version = version
    end
    return cache.routes
end

-- Restore the routes the CLI last persisted, so a restarted nginx comes back
-- with the current weights and endpoints, not with defaults.
function M.restore()
    local file = io.open(config.routes_file, "r")
    if not file then
        return
    end
    local raw = file:read("*a")
    file:close()
    local problem = store(raw)
    if problem then
        ngx.log(ngx.ERR, "swiftdeploy: ignoring persisted routes: ", problem)
    end
end

local function is_up(addr)
    return not dict:get("down:" .. addr)
end

local function healthy(list, tried)
    local out = {}
    for _, addr in ipairs(list or {}) do
        if is_up(addr) and not (tried and tried[addr]) then
            out[#out + 1] = addr
        end
    end
    return out
end

local function other(track)
    return track == "canary" and "stable" or "canary"
end

-- Deterministic weighted split: request n goes to the canary when
-- floor(n*w/100) steps up, so any 100 consecutive requests carry exactly w canary ones.
local function weighted_track(weight)
    if weight <= 0 then
        return "stable"
    elseif weight >= 100 then
        return "canary"
    end
    local n = dict:incr("split_counter", 1, 0)
    if math.floor(n * weight / 100) > math.floor((n - 1) * weight / 100) then
        return "canary"
    end
    return "stable"
end

-- A sticky pin is `nonce.expiry.tag`: the tag is an HMAC, under a key only nginx and the
-- project's owner hold, of track|nonce|rollout|expiry. A client cannot forge one, a pin
-- from another rollout or past its expiry is worth nothing, and the track is not in
-- the value: the router finds it by checking both tracks' tags, so a cookie does not
-- tell its holder (or the next client) where the split put it.
local URL_SAFE = { ["+"] = "-", ["/"] = "_" }

local function mac(text)
    local b64 = ngx.encode_base64(ngx.hmac_sha1(config.cookie_key, text), true)
    return (b64:gsub("[+/]", URL_SAFE))
end

local function pin_tag(track, nonce, rollout, expiry)
    return mac(track .. "|" .. nonce .. "|" .. rollout .. "|" .. expiry)
end

-- A fresh nonce per pin, so no two clients share a value. Derived by HMAC from a
-- counter, nginx's start and the clock rather than being the counter itself: a counted
-- nonce would show how many pins were issued, and with it where the split stands.
local function new_nonce()
    local n = dict:incr("pin_counter", 1, 0)
    local seed = "nonce|" .. (dict:get("history_since") or 0) .. "|" .. ngx.worker.pid()
        .. "|" .. n .. "|" .. ngx.now()
    return mac(seed):sub(1, 16)
end

local function issue_pin(track, rollout)
    local nonce = new_nonce()
    local expiry = tostring(ngx.time() + config.pin_ttl)
    ngx.header["Set-Cookie"] = config.sticky_cookie .. "=" .. nonce .. "." .. expiry .. "."
        .. pin_tag(track, nonce, rollout, expiry) .. "; Path=/; Max-Age=" .. config.pin_ttl
        .. "; HttpOnly; SameSite=Lax"
end

local function pinned_track(rollout)
    local value = ngx.var["cookie_" .. config.sticky_cookie]
    if not value or #value > 80 then
        return nil
    end
    local nonce, expiry, tag = value:match("^([%w_%-]+)%.(%d+)%.([%w_%-]+)$")
    if not nonce or tonumber(expiry) <= ngx.time() then
        return nil
    end
    for _, track in ipairs({ "stable", "canary" }) do
        if tag == pin_tag(track, nonce, rollout, expiry) then
            return track
        end
    end
    return nil
end

function M.choose_track()
    local r = routes()
    local weight = r.weights.canary
    local override = ngx.req.get_headers()[config.canary_header]
    local track
    if override == "always" or override == "never" then
        track = override == "always" and "canary" or "stable"
        -- A client chose the track: served, but kept out of the analysis counts, so
        -- outside clients cannot skew either track's statistics.
        ngx.ctx.forced = true
    elseif config.sticky_cookie and weight > 0 and weight < 100 then
        -- Pins matter only while traffic is split. A returning client keeps its track,
        -- but its requests stay out of the analysis counts like forced ones: a client
        -- may replay its own pin at will, so only the split's choices are evidence.
        local rollout = r.rollout or ""
        track = pinned_track(rollout)
        if track then
            ngx.ctx.pinned = true
        else
            track = weighted_track(weight)
            issue_pin(track, rollout)
        end
    else
        track = weighted_track(weight)
    end
    if #healthy(r.endpoints[track]) == 0 and #healthy(r.endpoints[other(track)]) > 0 then
        track = other(track)
    end
    ngx.ctx.track = track
    ngx.var.swiftdeploy_track = track
end

function M.balance()
    local ctx = ngx.ctx
    local r = routes()
    if ctx.tried then
        local state = balancer.get_last_failure()
        if state == "failed" and ctx.last then
            -- Connection-level failure: take the peer out until the checker sees it healthy.
            dict:set("down:" .. ctx.last, true)
        end
    else
        ctx.tried = {}
        balancer.set_more_tries(2)
    end
    local track = ctx.track or "stable"
    local candidates = healthy(r.endpoints[track], ctx.tried)
    if #candidates == 0 then
        track = other(track)
        candidates = healthy(r.endpoints[track], ctx.tried)
    end
    if #candidates == 0 then
        ngx.log(ngx.ERR, "swiftdeploy: no healthy endpoint")
        return ngx.exit(502)
    end
    local n = dict:incr("rr:" .. track, 1, 0)
    local addr = candidates[(n % #candidates) + 1]
    ctx.tried[addr] = true
    ctx.last = addr
    ctx.track = track
    ngx.var.swiftdeploy_track = track
    local host, port = addr:match("^(.+):(%d+)$")
    local ok, err = balancer.set_current_peer(host, tonumber(port))
    if not ok then
        ngx.log(ngx.ERR, "swiftdeploy: set_current_peer failed: ", err)
        return ngx.exit(502)
    end
end

-- nginx's per-attempt list in one of its $upstream_* variables: one entry per replica
-- tried, ", " between attempts and " : " between groups after an internal redirect,
-- in the same order in every such variable. An entry may be "-" (nothing measured) or,
-- in $upstream_addr, empty (no replica was picked).
local function attempts(value)
    local out = {}
    local text = (value or ""):gsub(" : ", ", ") .. ", "
    for entry in text:gmatch("(.-), ") do
        out[#out + 1] = entry
    end
    return out
end

-- The seconds the service took for this request: what the router waited for it, never
-- the client's own time (docs/decisions.md, "Latency is the service's time"). nginx
-- reads the whole request before it picks a replica (proxy_request_buffering on), so
-- its clock for an attempt starts when the request is ready to send.
--
-- Per attempt, the time until that replica's response header ($upstream_header_time),
-- not until its last byte ($upstream_response_time): a response bigger than nginx's
-- buffers reaches nginx only as fast as the client reads it (no temp files), so a slow
-- reader would lengthen the last-byte time. An attempt without a header (refused,
-- reset, timed out: "-") counts its time until it failed ($upstream_response_time).
-- The attempts add up: the router waited for each in turn. nil when no attempt reached
-- a replica (none was up: the router answers 5xx itself, and $upstream_response_time
-- still says "0.000"): that request counts as a request and an error, but no service
-- time was spent on it, so the histogram leaves it out.
local function service_seconds()
    local addrs = attempts(ngx.var.upstream_addr)
    local headers = attempts(ngx.var.upstream_header_time)
    local responses = attempts(ngx.var.upstream_response_time)
    local total, timed = 0, false
    for i, addr in ipairs(addrs) do
        local seconds = tonumber(headers[i]) or tonumber(responses[i])
        if addr ~= "" and seconds then
            total = total + seconds
            timed = true
        end
    end
    if not timed then
        return nil
    end
    return total
end

local function bucket_index(seconds)
    for i, le in ipairs(BUCKETS) do
        if seconds <= le then
            return i
        end
    end
    return #BUCKETS + 1
end

-- Per-track counters and a latency histogram, measured in nginx itself, so a
-- service with no instrumentation can still be gated.
function M.record()
    local track = ngx.ctx.track
    if not track then
        return
    end
    if ngx.ctx.forced then
        dict:incr("forced:" .. track, 1, 0)
        return
    end
    if ngx.ctx.pinned then
        dict:incr("pinned:" .. track, 1, 0)
        return
    end
    dict:incr("req:" .. track .. ":" .. ngx.status, 1, 0)
    -- This second's counts, kept HISTORY_S seconds: requests, 5xx, and the one
    -- (non-cumulative) bucket the request fell in; /history sums them.
    local prefix = "h:" .. track .. ":" .. math.floor(ngx.now()) .. ":"
    dict:incr(prefix .. "n", 1, 0, HISTORY_S)
    if ngx.status >= 500 then
        dict:incr(prefix .. "e", 1, 0, HISTORY_S)
    end
    local seconds = service_seconds()
    if not seconds then
        return
    end
    for _, le in ipairs(BUCKETS) do
        if seconds <= le then
            dict:incr("bucket:" .. track .. ":" .. le, 1, 0)
        end
    end
    dict:incr("bucket:" .. track .. ":+Inf", 1, 0)
    dict:incr("sum:" .. track, seconds, 0)
    dict:incr(prefix .. "b" .. bucket_index(seconds), 1, 0, HISTORY_S)
end

-- The time history starts from: nginx's start (the dict is new on every start).
function M.note_history_start()
    dict:add("history_since", math.floor(ngx.now()))
end

-- Sum one track's per-second counts over the whole seconds [from, to).
function M.admin_history(track)
    local args = ngx.req.get_uri_args()
    local from, to = tonumber(args.from), tonumber(args.to)
    if not from or not to or from ~= math.floor(from) or to ~= math.floor(to)
        or to < from or to - from > HISTORY_MAX_SPAN then
        ngx.status = 400
        ngx.say(cjson.encode({ error = "from and to must be whole seconds, at most "
            .. HISTORY_MAX_SPAN .. " apart" }))
        return
    end
    local requests, errors = 0, 0
    local counts = {}
    for i = 1, #BUCKETS + 1 do
        counts[i] = 0
    end
    for sec = from, to - 1 do
        local prefix = "h:" .. track .. ":" .. sec .. ":"
        local n = dict:get(prefix .. "n")
        if n then
            requests = requests + n
            errors = errors + (dict:get(prefix .. "e") or 0)
            for i = 1, #BUCKETS + 1 do
                counts[i] = counts[i] + (dict:get(prefix .. "b" .. i) or 0)
            end
        end
    end
    local buckets, running = {}, 0
    for i, le in ipairs(BUCKETS) do
        running = running + counts[i]
        buckets[tostring(le)] = running
    end
    buckets["+Inf"] = running + counts[#BUCKETS + 1]
    ngx.header["Content-Type"] = "application/json"
    ngx.say(cjson.encode({
        from = from,
        to = to,
        since = dict:get("history_since") or from,
        kept_s = HISTORY_S,
        requests = requests,
        errors = errors,
        buckets = buckets,
    }))
end

local function check(addr)
    local host, port = addr:match("^(.+):(%d+)$")
    local sock = ngx.socket.tcp()
    sock:settimeouts(250, 500, 500)
    local ok = sock:connect(host, tonumber(port))
    local up = false
    if ok then
        sock:send("GET " .. config.health_path .. " HTTP/1.0\r\nHost: " .. host .. "\r\n\r\n")
        local line = sock:receive("*l")
        up = line ~= nil and line:match("^HTTP/%d%.%d 200") ~= nil
    end
    sock:close()
    if up then
        dict:delete("down:" .. addr)
    else
        dict:set("down:" .. addr, true)
    end
end

local function health_round(premature)
    if premature then
        return
    end
    local r = routes()
    for _, track in ipairs({ "stable", "canary" }) do
        for _, addr in ipairs(r.endpoints[track] or {}) do
            check(addr)
        end
    end
    -- Re-arm after the round, so a slow round never overlaps the next.
    local ok, err = ngx.timer.at(config.health_interval, health_round)
    if not ok then
        ngx.log(ngx.ERR, "swiftdeploy: health checker stopped: ", err)
    end
end

-- Run as root, nginx drops a worker to its `user` and then makes it dumpable again (to
-- allow a core dump); a dumpable process's memory (/proc/PID/mem) is open to every
-- process of its uid. Undumpable, only root can open it. Each worker calls this once,
-- from init_worker_by_lua; a worker that cannot be made undumpable exits with nginx's
-- fatal code (2), so the master does not start it again, and no worker serves.
function M.forbid_tracing()
    local ffi = require("ffi")
    pcall(ffi.cdef, "int prctl(int option, unsigned long arg2, unsigned long arg3,"
        .. " unsigned long arg4, unsigned long arg5);")
    local PR_SET_DUMPABLE = 4
    if ffi.C.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) ~= 0 then
        ngx.log(ngx.EMERG, "swiftdeploy: cannot make the worker undumpable: errno ", ffi.errno())
        os.exit(2)
    end
end

function M.start_health_checker()
    if ngx.worker.id() ~= 0 then
        return
    end
    ngx.timer.at(0, health_round)
end

local function down_list(r)
    local out = {}
    for _, track in ipairs({ "stable", "canary" }) do
        for _, addr in ipairs(r.endpoints[track] or {}) do
            if not is_up(addr) then
                out[#out + 1] = addr
            end
        end
    end
    return out
end

function M.admin_routes()
    local method = ngx.req.get_method()
    if method == "PUT" then
        ngx.req.read_body()
        local raw = ngx.req.get_body_data()
        local problem = "empty body"
        if raw then
            problem = store(raw)
        end
        if problem then
            ngx.status = 400
            ngx.say(cjson.encode({ error = problem }))
            return
        end
    elseif method ~= "GET" then
        ngx.status = 405
        return
    end
    local r = routes()
    ngx.header["Content-Type"] = "application/json"
    -- Debian's lua-cjson encodes an empty table as {}; the client reads both.
    ngx.say(cjson.encode({
        routes = r,
        version = cache.version,
        down = down_list(r),
        now = ngx.now(),
    }))
end

-- One track's counters in the same series and labels as the demo service's own
-- metrics, so the scrape machinery reads nginx and the app alike.
function M.admin_metrics(track)
    local labels = 'method="ANY",route="nginx"'
    local lines = { "# TYPE http_requests_total counter" }
    local prefix = "req:" .. track .. ":"
    for _, key in ipairs(dict:get_keys(0)) do
        if key:sub(1, #prefix) == prefix then
            lines[#lines + 1] = string.format('http_requests_total{%s,code="%s"} %d',
                labels, key:sub(#prefix + 1), dict:get(key) or 0)
        end
    end
    lines[#lines + 1] = "# TYPE http_request_duration_seconds histogram"
    for _, le in ipairs(BUCKETS) do
        lines[#lines + 1] = string.format('http_request_duration_seconds_bucket{%s,le="%s"} %d',
            labels, tostring(le), dict:get("bucket:" .. track .. ":" .. le) or 0)
    end
    local total = dict:get("bucket:" .. track .. ":+Inf") or 0
    lines[#lines + 1] = string.format(
        'http_request_duration_seconds_bucket{%s,le="+Inf"} %d', labels, total)
    lines[#lines + 1] = string.format(
        'http_request_duration_seconds_count{%s} %d', labels, total)
    lines[#lines + 1] = string.format(
        'http_request_duration_seconds_sum{%s} %.6f', labels, dict:get("sum:" .. track) or 0)
    lines[#lines + 1] = "# HELP swiftdeploy_forced_requests_total Requests a client forced "
        .. "onto this track with the override header; not in the counts above."
    lines[#lines + 1] = "# TYPE swiftdeploy_forced_requests_total counter"
    lines[#lines + 1] = string.format("swiftdeploy_forced_requests_total %d",
        dict:get("forced:" .. track) or 0)
    lines[#lines + 1] = "# HELP swiftdeploy_pinned_requests_total Requests a sticky pin "
        .. "sent to this track; not in the counts above."
    lines[#lines + 1] = "# TYPE swiftdeploy_pinned_requests_total counter"
    lines[#lines + 1] = string.format("swiftdeploy_pinned_requests_total %d",
        dict:get("pinned:" .. track) or 0)
    ngx.header["Content-Type"] = "text/plain; version=0.0.4"
    ngx.say(table.concat(lines, "\n"))
end

return M
