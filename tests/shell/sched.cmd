# Many sessions stepped together: the scheduler runs the ones nothing can
# stop in one batched forward pass; a breakpoint in one stops it alone, the
# others go on, and `resume` puts it back.  IO_WAIT parks a session.
# expect-exit: 1
load models/stories260K.bin --tokenizer models/tok512.bin
start "Once upon a time" -n 16
session new b
start "Lily and the dog" -n 12
session new c
break L2.resid_post if pos == 9
start "The sun was" -n 10
sched add main b c
sched step 3
io_wait b
info sched
sched run
bt
print L2.resid_post [0, 0:4]
delete 1
resume c
resume b
resume b
sched run
info sched
session main
info text
session b
info text
session c
info text
# the same runs alone, for comparison
session new d
run "Once upon a time" -n 16
run "Lily and the dog" -n 12
run "The sun was" -n 10
# bad calls
io_wait nosuch
sched policy fifo
sched budget 0
sched add d
sched frob
