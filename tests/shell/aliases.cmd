# expect-exit: 1
# gdb's abbreviations that are aliases, not prefixes: `dis` and `disa` are
# disable (never "ambiguous ... disable, display"), `en` enable, `br` break,
# `fin` finish, `fg` continue, `inf` info (issue 14).  A prefix that is
# not one of them stays ambiguous.
load models/stories260K.bin --tokenizer models/tok512.bin
br L1.q
brea L2.q
dis 1
disa 2
inf b
en 1
i b
help dis
start "Once upon a time" -n 2
fin
fg
di
