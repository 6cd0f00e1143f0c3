-- s:lens and m:tokenize's pieces: the lens at the last layer's resid_post is
-- the model's own logits; earlier sites give rows x vocab; misuse raises.
local djinn = require "djinn"
local m = assert(djinn.load(arg[1], {device = "cpu"}))
local info = m:info()

local ids, pieces = m:tokenize("Once upon a time")
assert(#ids == 5 and #pieces == 5, "five ids and five pieces")
assert(pieces[1] == "<s>" and pieces[3] == "\u{2581}upon", pieces[3])
assert(m:detokenize(ids) ~= "")

local s = m:session()
s:break_at("logits")
s:start(ids, {n = 3})
local last = "L" .. (info.n_layer - 1) .. ".resid_post"
for _ = 1, 2 do -- the prompt's chunk (5 rows), then a decode step (1 row)
  assert(s:continue() == "breakpoint")
  local rows = s:cursor().n_rows
  local lg = s:tensor("logits")
  local l = s:lens(last, rows)
  assert(l.rows == 1 and l.cols == info.vocab, "one row of vocab logits")
  assert(l == lg, "the lens at " .. last .. " is the model's logits")
  local all = s:lens("L1.resid_mid")
  assert(all.rows == rows and all.cols == info.vocab)
  assert(all[rows] == s:lens("L1.resid_mid", rows), "rows at once are rows one by one")
end

local ok, msg = pcall(s.lens, s, "L1.q")
assert(not ok and msg:find("not a residual%-stream site"), msg)
ok, msg = pcall(s.lens, s, "L1.resid_post", 2)
assert(not ok and msg:find("row 2 outside 1..1"), msg)
ok, msg = pcall(s.lens, s, "logits")
assert(not ok, "logits is no residual site")
s:close()
m:close()
print("ok")
