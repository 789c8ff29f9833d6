#!/bin/sh
# /init of the small initramfs `cargo xtask vm-test --systemd` boots (see xtask/src/vm_systemd.rs):
# it loads the modules the kernel needs to mount the Debian 12 root filesystem on the first virtio
# disk (/modules/order, in load order, those the kernel has built in left out), mounts it
# read-write and hands over to systemd as PID 1.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
while read -r m args; do
    insmod "/modules/$m.ko" $args || echo "VM insmod $m failed"
done < /modules/order
i=0
while [ ! -b /dev/vda ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
echo 4 > /proc/sys/kernel/printk
echo "VM kernel $(cat /proc/sys/kernel/osrelease)"
mkdir -p /newroot
if ! mount -t ext4 -o rw /dev/vda /newroot; then
    echo "VM mount of the root filesystem failed"
    poweroff -f
fi
umount /proc /sys /dev
exec switch_root /newroot /lib/systemd/systemd
