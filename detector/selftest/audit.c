/* detector selftest: a minimal rtld-audit module (LD_AUDIT). ld.so keeps it loaded when
 * la_version answers; it audits nothing. When DETECTOR_SELFTEST_MARK names a file, it appends
 * one line there, so that the selftest knows ld.so loaded it. */
#include <fcntl.h>
#include <link.h>
#include <stdlib.h>
#include <unistd.h>

unsigned int la_version(unsigned int version) {
    const char *mark = getenv("DETECTOR_SELFTEST_MARK");
    if (mark) {
        int m = open(mark, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (m >= 0) {
            (void)!write(m, "la_version\n", 11);
            close(m);
        }
    }
    return version;
}
