# Files in the wrong place or of the wrong kind (issue 14, bug 8): a llama2.c
# .bin finds tok512.bin beside it; a tokenizer given as the model, or a text
# file or a model given as the tokenizer, says what it is not; -n past the
# context says how many tokens it allows; a Lua script's bad path is one line.
# expect-exit: 1
load models/tok512.bin
load models/stories260K.bin --tokenizer tests/shell/load-files.cmd
load models/stories260K.bin --tokenizer models/stories260K.gguf
load models/stories260K.bin --tokenizer models/stories260K.bin
load tests/shell/load-files.cmd
load models/stories260K.bin
start "Once upon a time" -n 600
start "Once upon a time" -n 507
start -n 508
run "Once upon a time" -n 3
source tests/shell/load-files.lua
echo still here\n
