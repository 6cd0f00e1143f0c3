-- expect: syntax.lua:4: unexpected symbol near '='
-- a syntax error: nothing runs, the position comes back on one line
-- traceback: no
local x = = 1
