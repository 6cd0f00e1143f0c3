# gdb's questions (delete and undisplay with no argument, quit with a live
# run or checkpoints, run over a paused run) are asked at a terminal only:
# in batch mode, as from a pipe or a sourced file, the answer is yes and
# nothing is printed.  tests/shell/interactive.sh types the answers.
load models/stories260K.bin --tokenizer models/tok512.bin
break L1.q
display L1.q [0, 0:4]
delete
info breakpoints
undisplay
info display
break L2.q
start "Once upon a time" -n 2
continue
checkpoint
run "Once upon a time" -n 2
checkpoint
quit
echo not reached\n
