-- test_tensor.lua - djinn.Tensor: construction, fields, arithmetic, stats,
-- .npy round trips, argument errors.
local djinn = require "djinn"

local function near(a, b, eps) return math.abs(a - b) <= (eps or 1e-6) end

local a = djinn.tensor{ 1, 2, 3, 4 }
assert(a.rows == 1 and a.cols == 4 and a.shape[1] == 1 and a.shape[2] == 4 and a.dtype == "f32")
assert(#a == 1 and a.n == 4)
local m = djinn.tensor{ { 1, 2, 3 }, { 4, 5, 6 } }
assert(m.rows == 2 and m.cols == 3 and #m == 2 and m:get(2, 3) == 6)
assert(m[2]:get(1, 1) == 4 and m[3] == nil and m[2].shape[1] == 1)
local f = djinn.tensor(2, 3, 0.5)
assert(f:get(2, 2) == 0.5 and f:sum() == 3)
assert(djinn.tensor(m) == m, "copy equals")

-- arithmetic by scalars and same-shape tensors, both orders
assert((a + 1) == djinn.tensor{ 2, 3, 4, 5 })
assert((1 + a) == djinn.tensor{ 2, 3, 4, 5 })
assert((a - a) == djinn.tensor(1, 4))
assert((10 - a) == djinn.tensor{ 9, 8, 7, 6 })
assert((a * 2) == djinn.tensor{ 2, 4, 6, 8 } and (2 * a) == a * 2)
assert((a * a) == djinn.tensor{ 1, 4, 9, 16 })
assert((a / 2) == djinn.tensor{ 0.5, 1, 1.5, 2 } and (12 / a):get(1, 4) == 3)
assert((-a) == djinn.tensor{ -1, -2, -3, -4 })
assert(a ~= djinn.tensor{ 1, 2, 3, 5 } and a ~= m)
assert(a:get(1, 1) == 1, "operands are not modified")
local ok, err = pcall(function() return a + m end)
assert(not ok and err:find("shape mismatch: 1x4 and 2x3"), err)
ok, err = pcall(function() return a * "x" end)
assert(not ok and err:find("number expected"), err)
ok, err = pcall(function() return a + {} end)
assert(not ok, "table operand rejected")

-- methods
assert(near(a:dot(a), 30) and near(a:norm(), math.sqrt(30)) and a:argmax() == 3)
local st = m:stats()
assert(st.n == 6 and st.min == 1 and st.max == 6 and near(st.mean, 3.5) and st.argmax == 5)
assert(near(st.std, math.sqrt(35 / 12), 1e-5) and near(st.l2, math.sqrt(91), 1e-5))
assert(st.nan == 0 and st.inf == 0 and st.absmax == 6)
local nan = djinn.tensor{ 0 / 0, 1, 1 / 0 }:stats()
assert(nan.nan == 1 and nan.inf == 1 and nan.max == 1)
local l = m:tolist()
assert(#l == 2 and #l[2] == 3 and l[2][3] == 6)
local fl = m:flat()
assert(#fl == 6 and fl[4] == 4)
local c = m:clone(); c:set(1, 1, 42)
assert(c:get(1, 1) == 42 and m:get(1, 1) == 1, "clone is a copy")
assert(m:reshape(3, 2):get(3, 1) == 5 and m:row(2) == djinn.tensor{ 4, 5, 6 })
assert(tostring(m):find("^djinn.Tensor%(2x3 f32"))
ok, err = pcall(m.get, m, 3, 1)
assert(not ok and err:find("row 3 outside 1..2"), err)
ok, err = pcall(m.reshape, m, 4, 2)
assert(not ok and err:find("does not hold"), err)

-- construction errors
ok, err = pcall(djinn.tensor, { 1, "x" })
assert(not ok and err:find("not a number"), err)
ok, err = pcall(djinn.tensor, { { 1, 2 }, { 3 } })
assert(not ok and err:find("rows must be equal"), err)
ok, err = pcall(djinn.tensor, {})
assert(not ok and err:find("empty"), err)
ok, err = pcall(djinn.tensor, 0, 3)
assert(not ok, "zero rows")
ok, err = pcall(djinn.tensor, true)
assert(not ok and err:find("table, Tensor or rows, cols expected"), err)

-- .npy: header bytes as numpy writes them, and a round trip
local path = os.tmpname()
assert(m:save(path) == true)
local fh = io.open(path, "rb")
local bytes = fh:read("a")
fh:close()
assert(bytes:sub(1, 8) == "\x93NUMPY\x01\x00")
local hlen = bytes:byte(9) + 256 * bytes:byte(10)
assert((10 + hlen) % 64 == 0, "header aligned to 64")
assert(bytes:sub(11, 10 + hlen):find("^{'descr': '<f4', 'fortran_order': False, 'shape': %(2, 3%), } *\n$"))
assert(#bytes == 10 + hlen + 6 * 4)
assert(string.unpack("<f", bytes, 10 + hlen + 1 + 4 * 5) == 6)
local back = assert(djinn.load_npy(path))
assert(back == m, "npy round trip")
-- a 1-D f8 file, as numpy.save(np.arange(3.0)) writes it
local hdr = "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }"
hdr = hdr .. string.rep(" ", 64 - 10 - #hdr - 1) .. "\n"
fh = io.open(path, "wb")
fh:write("\x93NUMPY\x01\x00", string.char(#hdr, 0), hdr, string.pack("<ddd", 0, 1, 2))
fh:close()
local v = assert(djinn.load_npy(path))
assert(v.rows == 1 and v.cols == 3 and v:get(1, 3) == 2)
fh = io.open(path, "wb"); fh:write("not numpy"); fh:close()
local none, msg = djinn.load_npy(path)
assert(none == nil and msg:find("not an .npy file"), msg)
os.remove(path)
none, msg = djinn.load_npy("/nonexistent.npy")
assert(none == nil and msg:find("No such file"), msg)
none, msg = m:save("/nonexistent/dir/x.npy")
assert(none == nil and msg:find("No such file"), msg)

-- tensors are collected: many large ones do not grow memory without bound
for _ = 1, 200 do local _ = djinn.tensor(256, 1024) end
collectgarbage()
assert(collectgarbage("count") < 64 * 1024, "tensors freed by the GC")
print("test_tensor: ok")
