/* detector selftest: a libc read() hook in the shape of Test 3 of the T1056.004 detection
 * guide. It passes every read through unchanged and keeps nothing it reads. When
 * DETECTOR_SELFTEST_MARK names a file, it appends one line there on its first call, so that
 * the selftest knows the hook ran. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

ssize_t read(int fd, void *buf, size_t count) {
    static ssize_t (*real_read)(int, void *, size_t);
    static int marked;
    if (!real_read)
        real_read = (ssize_t (*)(int, void *, size_t))dlsym(RTLD_NEXT, "read");
    if (!marked) {
        const char *mark = getenv("DETECTOR_SELFTEST_MARK");
        marked = 1;
        if (mark) {
            int m = open(mark, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
            if (m >= 0) {
                (void)!write(m, "read\n", 5);
                close(m);
            }
        }
    }
    return real_read(fd, buf, count);
}
