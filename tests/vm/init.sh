#!/bin/sh
# /init of the initramfs used to check detector by hand on Debian kernels 6.1 and 6.12 under qemu
# (issue 3). The seed of `cargo xtask vm-test` (issue 6), which is not written yet. The image holds
# busybox-static, target/release/detector with its libraries, /usr/bin/cat and /usr/bin/true, and
# /payload/{hook.so,loadlib,tamper} built from tests/fixtures. Boot: qemu-system-x86_64 -kernel
# vmlinuz -initrd initrd.gz -append "console=ttyS0 lsm=bpf" -nographic -no-reboot.
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev; mount -t tmpfs tmp /tmp; mkdir -p /dev/shm; mount -t tmpfs shm /dev/shm
echo "=== kernel $(cat /proc/sys/kernel/osrelease)"
/bin/detector run --ready-file /tmp/ready > /tmp/alerts 2> /tmp/log &
i=0; while [ ! -f /tmp/ready ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
if [ ! -f /tmp/ready ]; then echo "RESULT armed FAIL"; grep -a "detector: error" /tmp/log | cut -c1-300; tail -12 /tmp/log; poweroff -f; fi
grep -E "capture path" /tmp/log
LD_PRELOAD=/payload/hook.so /usr/bin/cat /etc/hostname > /dev/null
/payload/loadlib memfd /payload/hook.so
echo > /etc/ld.so.preload
/payload/tamper ptrace > /dev/null
sleep 1
check() { if grep -q "$2" /tmp/alerts; then echo "RESULT $1 pass"; else echo "RESULT $1 FAIL"; fi; }
check preload_env '"preload_env".*"comm":"cat"'
check memfd '"/memfd:payload'
check ld_so_preload '"path":"/etc/ld.so.preload","operation":"open_write"'
check ptrace '"operation":"ptrace","request":4'
cut -c1-400 /tmp/alerts; kill %1; sleep 1; tail -3 /tmp/log
poweroff -f
