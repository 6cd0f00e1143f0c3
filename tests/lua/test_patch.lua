-- m:patch: activation patching between two prompts; the clean prompt into
-- itself changes nothing; the last layer's last position restores the clean
-- metric; before the corrupted token nothing changes; misuse raises.
local djinn = require "djinn"
local m = assert(djinn.load(arg[1], {device = "cpu"}))
local info = m:info()
local a = m:tokenize(",", false)[1]
local b = m:tokenize("there", false)[1]

local t, clean, corrupt = m:patch{clean = "Once upon a time", corrupt = "Once upon a time",
                                  a = a, b = b}
assert(t.rows == info.n_layer and t.cols == 5, "layers x positions")
assert(clean == corrupt)
for l = 1, t.rows do for p = 1, t.cols do assert(t:get(l, p) == 0) end end

t, clean, corrupt = m:patch{clean = "Once upon a time", corrupt = "Once in a time", a = a,
                            b = b, site = "L*.resid_post"}
assert(math.abs(clean - corrupt) > 1e-3, "the corruption moves the metric")
assert(math.abs(t:get(info.n_layer, 5) - 1) < 1e-6, "the last residual restores it")
for l = 1, t.rows do for p = 1, 2 do assert(t:get(l, p) == 0) end end
assert(m:patch{clean = "Once upon a time", corrupt = "Once in a time", a = a, b = b,
               site = "mlp_out"}.rows == info.n_layer)

local ok, msg = pcall(m.patch, m, {clean = "Once upon a time", corrupt = "Once upon", a = a, b = b})
assert(not ok and msg:find("differ in length"), msg)
ok, msg = pcall(m.patch, m, {clean = "a", corrupt = "b", a = a, b = b, site = "logits"})
assert(not ok and msg:find("not a per%-layer site"), msg)
ok, msg = pcall(m.patch, m, {clean = "a", corrupt = "b", a = a, b = 1e6})
assert(not ok and msg:find("outside the vocabulary"), msg)
ok, msg = pcall(m.patch, m, {clean = "a", corrupt = "b", a = a, b = b, sight = "x"})
assert(not ok, "a typo in the options")
m:close()
print("ok")
