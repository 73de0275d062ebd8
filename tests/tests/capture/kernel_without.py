"""Run a command on a kernel that seems to lack one bpf(2) command.

Usage: kernel_without.py BPF_CMD COMMAND [ARG...]

A seccomp filter makes every bpf(BPF_CMD, ...) fail with EINVAL, the answer a kernel that
predates the command gives, then execs COMMAND under it. Only that command of that
process tree is affected.
"""

import errno
import os
import sys

import seccomp

cmd = int(sys.argv[1])
bpf_filter = seccomp.SyscallFilter(seccomp.ALLOW)
bpf_filter.add_rule(seccomp.ERRNO(errno.EINVAL), "bpf", seccomp.Arg(0, seccomp.EQ, cmd))
bpf_filter.load()
os.execvp(sys.argv[2], sys.argv[2:])
