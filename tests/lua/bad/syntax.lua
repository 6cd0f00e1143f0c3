-- expect: syntax.lua:3: unexpected symbol near '='
-- a syntax error: nothing runs, the position and a traceback come back
local x = = 1
