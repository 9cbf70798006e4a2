// The Lua side of the scripting environment, run once when the VM starts (after the JS functions
// `redis.call` & co. were registered as `__mr_*` globals). Redis embeds Lua 5.1 and patches it
// with read-only tables; wasmoon is Lua 5.4, so the sandbox is built from what 5.4 offers:
//  - scripts run with a proxy as their globals (`_ENV`): reading a missing global raises
//    "Script attempted to access nonexistent global variable 'x'", writing one raises
//    "Attempt to modify a readonly table", as Redis 7.0's protected globals do;
//  - the library tables (redis, string, math, table, cjson, bit, …) are proxies of the same kind,
//    and setmetatable/rawset refuse them with the same error;
//  - no os, io, package, require, loadfile, dofile, print, load with text from the script as
//    bytecode; `unpack`, `loadstring`, `math.pow`, `table.getn`, `string.gfind`… restored
//    as Lua 5.1 had them.

export const SANDBOX = String.raw`
local cwrap = __mr_cwrap
__mr_cwrap = nil
local rawexists = __mr_exists
__mr_exists = nil
local rawcall, rawpcall, rawsha1, rawlog, rawsetresp, rawsetrepl, rawcjdecode = __mr_call, __mr_pcall, __mr_sha1hex, __mr_log, __mr_setresp, __mr_setrepl, __mr_cjson_decode
__mr_call, __mr_pcall, __mr_sha1hex, __mr_log, __mr_setresp, __mr_setrepl, __mr_cjson_decode = nil, nil, nil, nil, nil, nil, nil
local type, tostring, error, pairs, ipairs, next, select, setmetatable, getmetatable, rawget, rawset, rawequal, rawlen =
      type, tostring, error, pairs, ipairs, next, select, setmetatable, getmetatable, rawget, rawset, rawequal, rawlen
local string, math, table, dbg, load, pcall, xpcall = string, math, table, debug, load, pcall, xpcall
local readonly = setmetatable({}, { __mode = 'k' })

local function protect(real, name_error)
  local proxy = {}
  readonly[proxy] = true
  setmetatable(proxy, {
    __index = name_error and function(_, k)
      local v = real[k]
      if v == nil then error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 2) end
      return v
    end or real,
    __newindex = function() error('Attempt to modify a readonly table', 2) end,
    __pairs = function() return next, real, nil end,
    __len = function() return #real end,
    __metatable = false,
  })
  return proxy
end

local function copy(t) local c = {} for k, v in pairs(t) do c[k] = v end return c end

-- redis.*
local redis = {}
redis.call = rawcall
redis.pcall = rawpcall
redis.sha1hex = rawsha1
redis.log = rawlog
redis.setresp = rawsetresp
redis.set_repl = rawsetrepl
redis.LOG_DEBUG, redis.LOG_VERBOSE, redis.LOG_NOTICE, redis.LOG_WARNING = 0, 1, 2, 3
redis.REPL_NONE, redis.REPL_AOF, redis.REPL_SLAVE, redis.REPL_REPLICA, redis.REPL_ALL = 0, 1, 2, 2, 3
redis.REDIS_VERSION, redis.REDIS_VERSION_NUM = __mr_version, __mr_version_num
__mr_version, __mr_version_num = nil, nil
function redis.replicate_commands() return true end
-- The Lua debugger (SCRIPT DEBUG) is not there: outside a debugging session Redis's are no-ops too.
function redis.breakpoint() return false end
function redis.debug() end
redis.acl_check_cmd = cwrap(function(...)
  if select('#', ...) == 0 then error({ err = 'ERR Please specify at least one argument for this redis lib call' }) end
  local name = ...
  if type(name) ~= 'string' or not rawexists(name) then error({ err = 'ERR Invalid command passed to redis.acl_check_cmd()' }) end
  return true
end)
local function errbuff(e)
  local code, msg
  if string.sub(e, 1, 1) == '-' then
    local space = string.find(e, ' ', 1, true)
    if space then code, msg = string.sub(e, 2, space - 1), string.sub(e, space + 1) else code, msg = 'ERR', string.sub(e, 2) end
  else
    code, msg = 'ERR', e
  end
  msg = string.gsub(msg, '^[\r\n]+', ''):gsub('[\r\n]+$', '')
  return { err = code .. ' ' .. msg }
end
function redis.error_reply(...)
  local e = ...
  if select('#', ...) ~= 1 or type(e) ~= 'string' then return errbuff('wrong number or type of arguments') end
  if string.sub(e, 1, 1) ~= '-' then e = '-' .. e end
  return errbuff(e)
end
function redis.status_reply(...)
  local s = ...
  if select('#', ...) ~= 1 or type(s) ~= 'string' then return errbuff('wrong number or type of arguments') end
  return { ok = s }
end

-- Lua 5.1 names scripts still use.
local env = {}
local globals
for _, name in ipairs({ 'assert', 'error', 'ipairs', 'next', 'pairs', 'pcall', 'rawequal', 'rawget', 'rawlen', 'rawset',
  'select', 'setmetatable', 'getmetatable', 'tonumber', 'tostring', 'type', 'xpcall', '_VERSION', 'collectgarbage' }) do
  env[name] = _G[name]
end
local function load_text(chunk, chunkname)
  if type(chunk) ~= 'string' then return nil, 'loadstring expects a string' end
  return load(chunk, chunkname or chunk, 't', globals)
end
env.loadstring = load_text
-- Lua 5.1 prints every number with %.14g (5.4 writes 5.0 for a float): tostring as 5.1.
local format = string.format
env.tostring = function(v)
  if type(v) == 'number' then
    if v ~= v then return (string.format('%f', v):gsub('^%-', '-')) end
    return format('%.14g', v)
  end
  return tostring(v)
end
env.unpack = table.unpack
env.gcinfo = function() return collectgarbage('count') end

-- Redis 7.0's pcall: an error table from redis.call reads as its message.
env.pcall = function(f, ...)
  local r = table.pack(pcall(f, ...))
  if not r[1] and type(r[2]) == 'table' and type(rawget(r[2], 'err')) == 'string' then r[2] = rawget(r[2], 'err') end
  return table.unpack(r, 1, r.n)
end

local mathlib = copy(math)
mathlib.pow = function(a, b) return a ^ b end
mathlib.ldexp = function(m, e) return m * 2.0 ^ e end
mathlib.frexp = function(x)
  if x == 0 then return 0.0, 0 end
  local e = math.floor(math.log(math.abs(x), 2)) + 1
  return x / 2.0 ^ e, e
end
mathlib.mod = math.fmod
mathlib.log10 = function(x) return math.log(x, 10) end
mathlib.cosh = function(x) return (math.exp(x) + math.exp(-x)) / 2 end
mathlib.sinh = function(x) return (math.exp(x) - math.exp(-x)) / 2 end
mathlib.tanh = function(x) local a, b = math.exp(x), math.exp(-x) return (a - b) / (a + b) end
-- Redis's math.random: the same sequence for the same seed on every machine (redisLrand48).
local seed = 0x1234ABCD330E -- rand.c's X2 X1 X0: the state carries over from script to script, as in Redis 7.0
local function lrand48()
  seed = (seed * 0x5DEECE66D + 0xB) & 0xFFFFFFFFFFFF
  return seed >> 17
end
local function srand48(s)
  seed = (((s & 0xFFFFFFFF) << 16) | 0x330E) & 0xFFFFFFFFFFFF
end
mathlib.random = function(...)
  local n = select('#', ...)
  local r = (lrand48() % 2147483647) / 2147483647
  if n == 0 then return r end
  local l, u = 1, math.tointeger(math.floor(...))
  if n == 2 then l, u = math.tointeger(math.floor((...))), math.tointeger(math.floor(select(2, ...))) end
  if n > 2 then error('wrong number of arguments', 2) end
  if l > u then error("bad argument #" .. n .. " to 'random' (interval is empty)", 2) end
  return math.floor(r * (u - l + 1)) + l
end
mathlib.randomseed = function(s) srand48(math.tointeger(math.floor(s)) or 0) end

local tablelib = copy(table)
tablelib.getn = function(t) return #t end
tablelib.setn = function() error("'setn' is obsolete", 2) end
tablelib.maxn = function(t)
  local m = 0
  for k in pairs(t) do if type(k) == 'number' and k > m then m = k end end
  return m
end
tablelib.foreach = function(t, f) for k, v in pairs(t) do local r = f(k, v) if r ~= nil then return r end end end
tablelib.foreachi = function(t, f) for i = 1, #t do local r = f(i, t[i]) if r ~= nil then return r end end end

local stringlib = copy(string)
stringlib.gfind = string.gmatch
stringlib.rep = function(s, n) return string.rep(s, n) end -- 5.1's: no separator
stringlib.dump = nil

-- bit (LuaBitOp): 32-bit operations on numbers, results signed.
local function tobit(x)
  x = math.floor(x) % 4294967296
  if x >= 2147483648 then x = x - 4294967296 end
  return math.tointeger(x)
end
local bit = {
  tobit = tobit,
  bnot = function(x) return tobit(~tobit(x)) end,
  band = function(x, ...) local r = tobit(x) for i = 1, select('#', ...) do r = r & tobit((select(i, ...))) end return tobit(r) end,
  bor = function(x, ...) local r = tobit(x) for i = 1, select('#', ...) do r = r | tobit((select(i, ...))) end return tobit(r) end,
  bxor = function(x, ...) local r = tobit(x) for i = 1, select('#', ...) do r = r ~ tobit((select(i, ...))) end return tobit(r) end,
  lshift = function(x, n) return tobit((tobit(x) & 0xFFFFFFFF) << (tobit(n) & 31)) end,
  rshift = function(x, n) return tobit((tobit(x) & 0xFFFFFFFF) >> (tobit(n) & 31)) end,
  arshift = function(x, n) return tobit(tobit(x) >> (tobit(n) & 31) | (tobit(x) < 0 and ~(0xFFFFFFFF >> (tobit(n) & 31)) or 0)) end,
  rol = function(x, n) x = tobit(x) & 0xFFFFFFFF n = tobit(n) & 31 return tobit((x << n) | (x >> (32 - n))) end,
  ror = function(x, n) x = tobit(x) & 0xFFFFFFFF n = tobit(n) & 31 return tobit((x >> n) | (x << (32 - n))) end,
  bswap = function(x) x = tobit(x) & 0xFFFFFFFF return tobit(((x & 0xFF) << 24) | ((x & 0xFF00) << 8) | ((x >> 8) & 0xFF00) | (x >> 24)) end,
  tohex = function(x, n)
    n = n or 8
    local upper = n < 0
    if upper then n = -n end
    local s = string.format(upper and '%08X' or '%08x', tobit(x) & 0xFFFFFFFF)
    return string.sub(s, 9 - n)
  end,
}

-- cjson: encode in Lua (bytes pass through as Redis's cjson does), decode in JS.
local cjson = {}
local null = __mr_null -- a NULL light userdata, as Lua cjson's
__mr_null = nil
cjson.null = null
local escapes = { ['"'] = '\\"', ['\\'] = '\\\\', ['/'] = '\\/', ['\b'] = '\\b', ['\f'] = '\\f', ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t' }
local function escape(s)
  return '"' .. string.gsub(s, '[%c"\\/]', function(c) return escapes[c] or string.format('\\u%04x', string.byte(c)) end) .. '"'
end
local cjconfig = { encode_max_depth = 1000, decode_max_depth = 1000, invalid = false }
local function number(n)
  if n ~= n or n == math.huge or n == -math.huge then
    if not cjconfig.invalid then error('Cannot serialise number: must not be NaN or Inf', 0) end
    return n ~= n and 'nan' or n > 0 and 'inf' or '-inf'
  end
  if math.type(n) == 'integer' then return tostring(n) end
  return string.format('%.14g', n)
end
local encode
encode = function(v, depth)
  local t = type(v)
  if t == 'string' then return escape(v)
  elseif t == 'number' then return number(v)
  elseif t == 'boolean' then return tostring(v)
  elseif v == nil or v == null then return 'null'
  elseif t == 'table' then
    if depth + 1 > cjconfig.encode_max_depth then error('Cannot serialise, excessive nesting (' .. (depth + 1) .. ')', 0) end
    local max, count, array = 0, 0, true
    for k in pairs(v) do
      if math.type(k) == 'integer' and k > 0 or (type(k) == 'number' and k > 0 and math.floor(k) == k) then
        if k > max then max = k end
        count = count + 1
      else
        array = false
        break
      end
    end
    if array and max > 10 and max > count * 2 then error('Cannot serialise table: excessively sparse array', 0) end
    local out = {}
    if array and count > 0 then
      for i = 1, max do out[i] = encode(v[i], depth + 1) end
      return '[' .. table.concat(out, ',') .. ']'
    end
    for k, item in pairs(v) do
      local tk = type(k)
      if tk ~= 'string' and tk ~= 'number' then error('Cannot serialise table: table key must be a number or string', 0) end
      out[#out + 1] = escape(tk == 'string' and k or number(k)) .. ':' .. encode(item, depth + 1)
    end
    return '{' .. table.concat(out, ',') .. '}'
  else
    error('Cannot serialise ' .. t .. ': type not supported', 0)
  end
end
-- Wrapped as C functions (cwrap): a script's 'return cjson.encode(x)' keeps its own frame for the
-- error's line, as with Redis's C library; level 3 is the script.
cjson.encode = cwrap(function(...)
  if select('#', ...) ~= 1 then error("bad argument #1 to 'encode' (expected 1 argument)", 3) end
  local ok, r = pcall(encode, (...), 0)
  if not ok then error(r, 3) end
  return r
end)
cjson.decode = cwrap(function(s)
  if type(s) ~= 'string' and type(s) ~= 'number' then error("bad argument #1 to 'decode' (string expected, got " .. type(s) .. ")", 3) end
  local ok, r = rawcjdecode(tostring(s), null, cjconfig.decode_max_depth)
  if not ok then error(r, 3) end
  return r
end)
-- The settings Lua cjson has (the ones that change anything here: depths, invalid numbers).
local function setting(name)
  return function(value)
    if value ~= nil then cjconfig[name] = value end
    return cjconfig[name]
  end
end
cjson.encode_max_depth = setting('encode_max_depth')
cjson.decode_max_depth = setting('decode_max_depth')
cjson.encode_invalid_numbers = setting('invalid')
cjson.decode_invalid_numbers = function() return true end
cjson.encode_keep_buffer = function() return true end
cjson.encode_number_precision = function() return 14 end
cjson.encode_sparse_array = function() return false, 2, 10 end


-- cmsgpack (lua_cmsgpack.c as Redis ships it): MessagePack with string.pack.
local spack, sunpack = string.pack, string.unpack
local function mp_int(n)
  if n >= 0 then
    if n <= 127 then return spack('B', n)
    elseif n <= 0xff then return spack('>BB', 0xcc, n)
    elseif n <= 0xffff then return spack('>BI2', 0xcd, n)
    elseif n <= 0xffffffff then return spack('>BI4', 0xce, n)
    else return spack('>Bi8', 0xcf, n) end
  end
  if n >= -32 then return spack('b', n)
  elseif n >= -128 then return spack('>Bb', 0xd0, n)
  elseif n >= -32768 then return spack('>Bi2', 0xd1, n)
  elseif n >= -2147483648 then return spack('>Bi4', 0xd2, n)
  else return spack('>Bi8', 0xd3, n) end
end
local function mp_number(n)
  if math.type(n) == 'integer' then return mp_int(n) end
  if n == math.floor(n) and n >= -2^63 and n < 2^63 then return mp_int(math.tointeger(n)) end
  local ok, f = pcall(function() return (sunpack('<f', spack('<f', n))) end)
  if ok and f == n then return spack('>Bf', 0xca, n) end
  return spack('>Bd', 0xcb, n)
end
local function mp_string(v)
  local len = #v
  if len < 32 then return spack('B', 0xa0 | len) .. v
  elseif len <= 0xff then return spack('>BB', 0xd9, len) .. v
  elseif len <= 0xffff then return spack('>BI2', 0xda, len) .. v
  else return spack('>BI4', 0xdb, len) .. v end
end
local mp_encode
local function mp_table(t, level)
  local count, max, array = 0, 0, true
  for k in pairs(t) do
    if math.type(k) ~= 'integer' or k <= 0 then array = false break end
    if k > max then max = k end
    count = count + 1
  end
  local out = {}
  if array and max == count then
    local len = #t
    if len < 16 then out[1] = spack('B', 0x90 | len)
    elseif len <= 0xffff then out[1] = spack('>BI2', 0xdc, len)
    else out[1] = spack('>BI4', 0xdd, len) end
    for j = 1, len do out[#out + 1] = mp_encode(t[j], level + 1) end
    return table.concat(out)
  end
  count = 0
  for _ in pairs(t) do count = count + 1 end
  if count < 16 then out[1] = spack('B', 0x80 | count)
  elseif count <= 0xffff then out[1] = spack('>BI2', 0xde, count)
  else out[1] = spack('>BI4', 0xdf, count) end
  for k, v in pairs(t) do
    out[#out + 1] = mp_encode(k, level + 1)
    out[#out + 1] = mp_encode(v, level + 1)
  end
  return table.concat(out)
end
mp_encode = function(v, level)
  local t = type(v)
  if t == 'string' then return mp_string(v)
  elseif t == 'boolean' then return v and '\xc3' or '\xc2'
  elseif t == 'number' then return mp_number(v)
  elseif t == 'table' and level < 16 then return mp_table(v, level)
  else return '\xc0' end
end
local MISSING, BADFMT = {}, {}
local mp_decode
local function need(s, pos, n) if pos + n - 1 > #s then error(MISSING, 0) end end
local function mp_array(s, pos, len)
  local t = {}
  for i = 1, len do
    local v
    v, pos = mp_decode(s, pos)
    t[i] = v
  end
  return t, pos
end
local function mp_map(s, pos, len)
  local t = {}
  for _ = 1, len do
    local k, v
    k, pos = mp_decode(s, pos)
    v, pos = mp_decode(s, pos)
    if k == nil or k ~= k then error('table index is nil', 0) end
    t[k] = v
  end
  return t, pos
end
local fixed = { [0xcc] = { '>B', 1 }, [0xd0] = { '>b', 1 }, [0xcd] = { '>I2', 2 }, [0xd1] = { '>i2', 2 }, [0xce] = { '>I4', 4 },
  [0xd2] = { '>i4', 4 }, [0xcf] = { '>i8', 8 }, [0xd3] = { '>i8', 8 }, [0xca] = { '>f', 4 }, [0xcb] = { '>d', 8 } }
mp_decode = function(s, pos)
  need(s, pos, 1)
  local b = string.byte(s, pos)
  local f = fixed[b]
  if f then
    need(s, pos, 1 + f[2])
    return (sunpack(f[1], s, pos + 1)), pos + 1 + f[2]
  end
  if b == 0xc0 then return nil, pos + 1
  elseif b == 0xc3 then return true, pos + 1
  elseif b == 0xc2 then return false, pos + 1
  elseif b == 0xd9 or b == 0xda or b == 0xdb then
    local size = b == 0xd9 and 1 or b == 0xda and 2 or 4
    need(s, pos, 1 + size)
    local len = sunpack('>I' .. size, s, pos + 1)
    need(s, pos, 1 + size + len)
    return string.sub(s, pos + 1 + size, pos + size + len), pos + 1 + size + len
  elseif b == 0xdc or b == 0xdd or b == 0xde or b == 0xdf then
    local size = (b == 0xdc or b == 0xde) and 2 or 4
    need(s, pos, 1 + size)
    local len = sunpack('>I' .. size, s, pos + 1)
    if b <= 0xdd then return mp_array(s, pos + 1 + size, len) end
    return mp_map(s, pos + 1 + size, len)
  elseif b < 0x80 then return b, pos + 1
  elseif b >= 0xe0 then return b - 256, pos + 1
  elseif b >= 0xa0 and b <= 0xbf then
    local len = b & 0x1f
    need(s, pos, 1 + len)
    return string.sub(s, pos + 1, pos + len), pos + 1 + len
  elseif b >= 0x90 and b <= 0x9f then return mp_array(s, pos + 1, b & 0xf)
  elseif b >= 0x80 and b <= 0x8f then return mp_map(s, pos + 1, b & 0xf)
  end
  error(BADFMT, 0)
end
local function mp_unpack_full(s, limit, offset)
  if type(s) ~= 'string' and type(s) ~= 'number' then error("bad argument #1 to 'unpack' (string expected, got " .. type(s) .. ")", 3) end
  s = tostring(s)
  local all = limit == 0 and offset == 0
  if offset < 0 or limit < 0 then
    error(string.format('Invalid request to unpack with offset of %d and limit of %d.', offset, #s), 3)
  elseif offset > #s then
    error(string.format('Start offset %d greater than input length %d.', offset, #s), 3)
  end
  if all then limit = math.maxinteger end
  local out, n, pos = {}, 0, offset + 1
  while pos <= #s and n < limit do
    local ok, v, nextpos = pcall(mp_decode, s, pos)
    if not ok then
      if v == MISSING then error('Missing bytes in input.', 3) end
      if v == BADFMT then error('Bad data format in input.', 3) end
      error(v, 3)
    end
    n = n + 1
    out[n] = v
    pos = nextpos
  end
  if all then return table.unpack(out, 1, n) end
  return (pos > #s and -1 or pos - 1), table.unpack(out, 1, n)
end
local cmsgpack = {}
cmsgpack.pack = cwrap(function(...)
  local n = select('#', ...)
  if n == 0 then error("bad argument #0 to 'pack' (MessagePack pack needs input.)", 3) end
  local out = {}
  for i = 1, n do out[i] = mp_encode((select(i, ...)), 0) end
  return table.concat(out)
end)
cmsgpack.unpack = cwrap(function(s) return mp_unpack_full(s, 0, 0) end)
cmsgpack.unpack_one = cwrap(function(s, offset) return mp_unpack_full(s, 1, math.tointeger(offset or 0) or 0) end)
cmsgpack.unpack_limit = cwrap(function(s, limit, offset) return mp_unpack_full(s, math.tointeger(limit) or 0, math.tointeger(offset or 0) or 0) end)
cmsgpack._NAME, cmsgpack._VERSION, cmsgpack._COPYRIGHT, cmsgpack._DESCRIPTION = 'cmsgpack', 'lua-cmsgpack 0.4.0', 'Copyright (C) 2012, Salvatore Sanfilippo', 'MessagePack C implementation for Lua'

env.redis = protect(redis)
env.cmsgpack = protect(cmsgpack)
env.string = protect(stringlib)
env.math = protect(mathlib)
env.table = protect(tablelib)
env.coroutine = protect(copy(coroutine))
env.bit = protect(bit)
env.cjson = protect(cjson)

-- setmetatable/rawset refuse the protected tables, as Redis's read-only tables do.
env.setmetatable = function(t, m)
  if readonly[t] then error('Attempt to modify a readonly table', 0) end
  return setmetatable(t, m)
end
env.rawset = function(t, k, v)
  if readonly[t] then error('Attempt to modify a readonly table', 0) end
  return rawset(t, k, v)
end
local frozen_metatable = protect({})
local frozen_string_metatable = protect({ __index = env.string })
env.getmetatable = function(t)
  -- A protected table's metatable, and the strings' one, are protected too (modifying them raises, as in Redis).
  if readonly[t] then return frozen_metatable end
  if type(t) == 'string' then return frozen_string_metatable end
  return getmetatable(t)
end

globals = protect(env, true)
env._G = globals

-- FUNCTION LOAD: the library's code runs once, with a redis table that has register_function
-- (and log, the LOG_* levels, the version) only, as Redis 7.0's library API.
local registered = nil
local known_flags = { ['no-writes'] = true, ['allow-oom'] = true, ['allow-stale'] = true, ['no-cluster'] = true, ['allow-cross-slot-keys'] = true }
local function reg_error(message) error({ err = 'ERR ' .. message }) end
local function register_function(...)
  if registered == nil then reg_error('redis.register_function can only be called on FUNCTION LOAD command') end
  local n = select('#', ...)
  local name, callback, flags, description
  if n == 1 then
    local t = ...
    if type(t) ~= 'table' then reg_error('calling redis.register_function with a single argument is only applicable to Lua table (representing named arguments).') end
    for k, v in pairs(t) do
      if type(k) ~= 'string' then reg_error('named argument key given to redis.register_function is not a string') end
      local key = string.lower(k)
      if key == 'function_name' then
        if type(v) ~= 'string' then reg_error('function_name argument given to redis.register_function must be a string') end
        name = v
      elseif key == 'description' then
        if type(v) ~= 'string' then reg_error('description argument given to redis.register_function must be a string') end
        description = v
      elseif key == 'callback' then
        if type(v) ~= 'function' then reg_error('callback argument given to redis.register_function must be a function') end
        callback = v
      elseif key == 'flags' then
        if type(v) ~= 'table' then reg_error('flags argument to redis.register_function must be a table representing function flags') end
        flags = {}
        for _, flag in ipairs(v) do
          if type(flag) ~= 'string' or not known_flags[flag] then reg_error('unknown flag given') end
          flags[#flags + 1] = flag
        end
      else
        reg_error('unknown argument given to redis.register_function')
      end
    end
    if name == nil then reg_error('redis.register_function must get a function name argument') end
    if callback == nil then reg_error('redis.register_function must get a callback argument') end
  elseif n == 2 then
    name, callback = ...
    if type(name) ~= 'string' then reg_error('first argument to redis.register_function must be a string') end
    if type(callback) ~= 'function' then reg_error('second argument to redis.register_function must be a function') end
  else
    reg_error('wrong number of arguments to redis.register_function')
  end
  if not string.match(name, '^[%w_]+$') then
    reg_error('Library names can only contain letters, numbers, or underscores(_) and must be at least one character long')
  end
  for _, r in ipairs(registered) do
    if r.name == name then reg_error('Function already exists in the library') end
  end
  registered[#registered + 1] = { name = name, callback = callback, flags = flags or {}, description = description }
end
local libredis = { register_function = register_function, log = redis.log,
  LOG_DEBUG = 0, LOG_VERBOSE = 1, LOG_NOTICE = 2, LOG_WARNING = 3,
  REDIS_VERSION = redis.REDIS_VERSION, REDIS_VERSION_NUM = redis.REDIS_VERSION_NUM }
-- A library's globals: while it loads, redis is the library API (a missing field reads as a
-- missing global, as in Redis); when its functions run later, the whole redis API.
local libredis_proxy = protect(libredis, true)
local loading = false
local libglobals = {}
readonly[libglobals] = true
setmetatable(libglobals, {
  __index = function(_, k)
    local v
    if k == '_G' then v = libglobals
    elseif loading and k == 'redis' then v = libredis_proxy
    else v = env[k] end
    if v == nil then error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 2) end
    return v
  end,
  __newindex = function() error('Attempt to modify a readonly table', 2) end,
  __pairs = function() return next, env, nil end,
  __metatable = false,
})
__mr_load_library = function(body)
  local f, err = load(body, '@user_function', 't', libglobals)
  if not f then return false, 'Error compiling function: ' .. tostring(err) end
  registered = {}
  loading = true
  local ok, e = pcall(f)
  loading = false
  local r = registered
  registered = nil
  if not ok then
    local message = type(e) == 'table' and rawget(e, 'err') or ('ERR ' .. tostring(e))
    return false, 'Error registering functions: ' .. tostring(message)
  end
  return true, r
end

__mr_env = env
__mr_globals = globals

-- The error handler Redis's EVAL runs: the error as a table, with the script's line.
local getinfo = dbg.getinfo
__mr_error_handler = function(err)
  local level, i = 2, nil
  while true do
    local info = getinfo(level, 'Sl')
    if info == nil then break end
    if info.source == '@user_script' or info.source == '@user_function' then i = info break end
    level = level + 1
  end
  if type(err) ~= 'table' then err = { err = 'ERR ' .. tostring(err) } end
  if i then
    rawset(err, 'source', i.source)
    rawset(err, 'line', i.currentline)
  end
  return err
end

-- Compile a script body with the sandbox as its globals.
__mr_compile = function(body)
  return load(body, '@user_script', 't', globals)
end

local collect = collectgarbage
__mr_collect = function() collect('collect') end
__mr_gc_step = function() collect('step', 200) end
local xpcall_ = xpcall
__mr_runner = function(handler, f, ...) return xpcall_(f, handler, ...) end
for _, name in ipairs({ 'debug', 'io', 'os', 'package', 'require', 'loadfile', 'dofile', 'print', 'utf8', 'load', 'loadstring' }) do
  _G[name] = nil
end
`;
