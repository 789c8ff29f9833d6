#!/bin/sh
# /init of the initramfs that `cargo xtask vm-test` boots under qemu on each Debian kernel (see
# xtask/src/vm.rs). The image holds busybox-static, target/release/detector as /bin/detector, the
# detector-tests end-to-end test binaries in /tests, the tests' fixtures compiled on the host in
# /fixtures (the guest has no gcc), the real (dynamically linked) programs the tests start in
# /usr/bin, and the shared libraries of all of these. /tests/plan names one test per line
# ("<binary> <test>"); each runs alone, as root, and the runner prints one
# "RESULT <binary>::<test> pass|FAIL <seconds>s" line per test on the serial console, which xtask
# reads, with the test's output after a failing one.
/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mkdir -p /dev/shm && mount -t tmpfs shm /dev/shm
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
# /usr (the real programs and the libraries, /lib being a link to usr/lib) is an ext2 image on a
# loop device: libraries on the initramfs (ramfs) are ones the detector reports as unsafe.
# /modules/order lists the modules this needs that the kernel does not have built in, each with
# its arguments.
while read -r m args; do
    insmod "/modules/$m.ko" $args || echo "VM insmod $m failed"
done < /modules/order
# devtmpfs makes the loop devices' nodes shortly after the module creates them.
i=0
while [ ! -e /dev/loop0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
mount -t ext4 -o ro,loop /usr.img /usr || echo "VM mount /usr failed"
# The kernel's boot messages went to the console (xtask waits for the first of them); from here
# on, only its errors do.
echo 4 > /proc/sys/kernel/printk
echo "VM kernel $(cat /proc/sys/kernel/osrelease) lsm=$(cat /sys/kernel/security/lsm 2>/dev/null)"

# What this kernel offers and which capture path the daemon will use.
/bin/detector check --json > /tmp/check.json 2> /tmp/check.err
echo "VM check $(cat /tmp/check.json)"

# The real programs in /usr/bin come before busybox's (static) applets in /bin, so that the
# tests' LD_PRELOAD and ld.so.preload apply to what they start.
export PATH=/usr/bin:/bin:/sbin
# Deadlines in the tests are about liveness; an emulated CPU (TCG) is several times slower.
export HOME=/root DETECTOR_BIN=/bin/detector DETECTOR_FIXTURES=/fixtures DETECTOR_TEST_TIME_SCALE=5
TEST_TIMEOUT=300
uptime_s() { cut -d' ' -f1 /proc/uptime; }
# A boot that resumes after a guest ended early skips the tests that already have a result
# (vmtest.skip=N on the kernel command line: the first N lines of the plan).
skip=$(tr ' ' '\n' < /proc/cmdline | sed -n 's/^vmtest\.skip=\([0-9]*\)$/\1/p')
n=0
while read -r bin name; do
    [ -n "$name" ] || continue
    n=$((n + 1))
    [ "$n" -gt "${skip:-0}" ] || continue
    echo "VM test $bin::$name"
    start=$(uptime_s)
    timeout "$TEST_TIMEOUT" "/tests/$bin" --exact --test-threads=1 "$name" < /dev/null > /tmp/out 2>&1
    rc=$?
    secs=$(awk -v a="$start" -v b="$(uptime_s)" 'BEGIN { printf "%.1f", b - a }')
    if [ "$rc" = 0 ] && grep -q '^test result: ok\. 1 passed' /tmp/out; then
        echo "RESULT $bin::$name pass ${secs}s"
    else
        echo "RESULT $bin::$name FAIL ${secs}s (exit $rc; $TEST_TIMEOUT s at most)"
        sed 's/^/    | /' /tmp/out
    fi
done < /tests/plan
echo "VM done"
poweroff -f
