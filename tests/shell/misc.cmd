# Settings, help, echo, source, and the rest of the small commands.
# expect-exit: 1
help
help break
help i b
help info
help set output
help steer
show
set precision 8
set elements 3
show precision
show elements
set confirm off
show confirm
info
i b
echo hello\tworld\n
echo "quotes stay" and 'so do these' \\ \n
load models/stories260K.bin --tokenizer models/tok512.bin
start "Once"
step 2
print L0.attn_norm
set elements 0
print L0.attn_norm [0, 0:3]
source tests/shell/include.txt
info breakpoints
kill
unload
info model
quit
echo not reached\n
