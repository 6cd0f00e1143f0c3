# Lua from the shell: one line, and a block whose own `end`s do not close it.
# expect-exit: 1
lua print("one line of Lua: " .. (6 * 7))
lua
local words = {}
for i = 1, 3 do
  if i ~= 2 then
    words[#words + 1] = "w" .. i
  end
end
print(table.concat(words, " "))
end
echo back in the shell\n
lua error("on purpose")
echo still here\n
