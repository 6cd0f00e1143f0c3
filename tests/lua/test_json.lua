-- test_json.lua - djinn.json: round trips, arrays vs objects, null, errors.
local json = require("djinn").json

local v = { schema = "x/1", n = 3, pi = 3.25, ok = true, no = false, list = { 1, 2, { a = "b" } },
            empty = {}, nested = { deep = { deeper = { "z" } } }, s = "quote \" and \n newline",
            utf8 = "h\u{e9}llo" }
local text = json.encode(v)
local back = assert(json.decode(text))
assert(back.schema == "x/1" and back.n == 3 and math.type(back.n) == "integer")
assert(back.pi == 3.25 and back.ok == true and back.no == false)
assert(#back.list == 3 and back.list[3].a == "b")
assert(type(back.empty) == "table" and next(back.empty) == nil and text:find('"empty":%[%]'))
assert(back.nested.deep.deeper[1] == "z" and back.s == v.s and back.utf8 == v.utf8)
local function deep_eq(x, y)
  if type(x) ~= "table" or type(y) ~= "table" then return x == y end
  for k, xv in pairs(x) do if not deep_eq(xv, y[k]) then return false end end
  for k in pairs(y) do if x[k] == nil then return false end end
  return true
end
assert(deep_eq(v, back), "round trip")
assert(deep_eq(back, json.decode(json.encode(back))), "stable")
-- arrays only when the keys are 1..n
assert(json.encode{ 1, 2, 3 } == "[1,2,3]")
assert(json.encode{ [1] = "a", [3] = "c" }:find('"3":"c"'), "sparse -> object")
assert(json.encode{ [2] = "b" } == '{"2":"b"}')
assert(json.encode{ b = 1, a = { z = 1, y = 2 }, c = 3 } == '{"a":{"y":2,"z":1},"b":1,"c":3}', "sorted keys")
-- null
local arr = json.decode("[1, null, 3]")
assert(#arr == 3 and arr[2] == json.null)
assert(json.encode{ 1, json.null, 3 } == "[1,null,3]")
assert(json.encode(nil) == "null" and json.encode(0 / 0) == "null")
-- scalars and indentation
assert(json.decode("42") == 42 and json.decode('"x"') == "x" and json.decode(" true ") == true)
assert(json.decode("1.5e3") == 1500 and json.decode("-0.5") == -0.5)
assert(json.encode({ a = 1 }, { indent = true }):find("\n"))
-- failures: bad text is nil, msg; bad values raise
local none, msg = json.decode('{"a": ')
assert(none == nil and msg:find("syntax error"), msg)
none, msg = json.decode('{} x')
assert(none == nil and msg:find("trailing"), msg)
local ok, err = pcall(json.encode, { f = print })
assert(not ok and err:find("cannot encode a function"), err)
local cyc = {}; cyc.self = cyc
ok, err = pcall(json.encode, cyc)
assert(not ok and err:find("a cycle"), err)
ok, err = pcall(json.encode, { [true] = 1 })
assert(not ok and err:find("keys must be strings or numbers"), err)
ok, err = pcall(json.decode)
assert(not ok, "decode needs a string")
print("test_json: ok")
