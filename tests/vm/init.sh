#!/bin/sh
# /init of the initramfs that `cargo xtask vm-test` boots under qemu on each Debian kernel. The
# image holds busybox-static, target/release/detector, the real (dynamically linked) cat, ls,
# whoami and ssh with their libraries, and /payload/libhook.so (tests/fixtures/read_hook.c, a libc
# read() hook). It runs the LD_PRELOAD atomic tests against the real daemon and prints one
# "RESULT <test> pass|FAIL" line per test on the serial console, which xtask reads.
/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mkdir -p /dev/shm && mount -t tmpfs shm /dev/shm
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
echo "VM kernel $(cat /proc/sys/kernel/osrelease) lsm=$(cat /sys/kernel/security/lsm 2>/dev/null)"

# What this kernel offers and which capture path the daemon will use.
/bin/detector check --json > /tmp/check.json 2> /tmp/check.err
echo "VM check $(cat /tmp/check.json)"

/bin/detector run --ready-file /tmp/ready > /tmp/alerts 2> /tmp/log &
DAEMON=$!
i=0
while [ ! -f /tmp/ready ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i + 1)); done
if [ ! -f /tmp/ready ]; then
    echo "RESULT armed FAIL"
    tail -20 /tmp/log
    poweroff -f
fi
echo "RESULT armed pass"
echo "VM $(grep 'capture path' /tmp/log)"

# Test 3 of the T1056.004 detection guide: a libc read() hook preloaded into cat.
HOOK_LOG=/tmp/hook.log LD_PRELOAD=/payload/libhook.so /usr/bin/cat /etc/hostname > /dev/null
# Atomic Red Team T1574.006 #2: LD_PRELOAD into ls.
LD_PRELOAD=/payload/libhook.so /usr/bin/ls / > /dev/null
# A preload into a credential program.
LD_PRELOAD=/payload/libhook.so /usr/bin/ssh -V 2> /dev/null
# Atomic Red Team T1574.006 #1: the library in /etc/ld.so.preload, then a program. The file stays
# until the daemon has handled the exec (it reads the list then), as in a real attack.
echo /payload/libhook.so > /etc/ld.so.preload
/usr/bin/whoami > /dev/null
sleep 2
rm -f /etc/ld.so.preload
sleep 1
kill -TERM $DAEMON
wait $DAEMON
STATUS=$?

# Every pattern (fixed strings) on one alert line.
match() {
    cp /tmp/alerts /tmp/m
    for p in "$@"; do
        grep -F -- "$p" /tmp/m > /tmp/m2
        mv /tmp/m2 /tmp/m
    done
    [ -s /tmp/m ]
}
result() {
    name=$1
    shift
    if match "$@"; then echo "RESULT $name pass"; else echo "RESULT $name FAIL"; fi
}
if [ -s /tmp/hook.log ]; then
    result read_hook_cat '"name":"cat"' '"path":"/payload/libhook.so"' '"preload_env"' '"hooks":["read"]'
else
    echo "RESULT read_hook_cat FAIL (the hook did not run)"
fi
result atomic_1_ld_so_preload '"name":"whoami"' '"preload_file"' '"path":"/payload/libhook.so"'
result atomic_1_write '"path":"/etc/ld.so.preload"' '"loader_config_change"'
result atomic_2_ls '"name":"ls"' '"preload_env"' '"path":"/payload/libhook.so"'
result ssh '"name":"ssh"' '"credential_process"' '"credential_hooks"' '"severity":"critical"'
if [ "$STATUS" = 0 ]; then echo "RESULT clean_stop pass"; else echo "RESULT clean_stop FAIL (exit $STATUS)"; fi
echo "VM alerts:"
cut -c1-600 /tmp/alerts
echo "VM daemon log:"
tail -12 /tmp/log
echo "VM done"
poweroff -f
