-- print bps.txt (tests/shell/save-breakpoints.cmd)
local f = assert(io.open("bps.txt"))
io.write(f:read("a"))
f:close()
