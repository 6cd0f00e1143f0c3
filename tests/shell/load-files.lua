-- a script given a bad model path (load-files.cmd sources it): one line
local m = assert(djinn.load("models/nonexistent.bin"))
