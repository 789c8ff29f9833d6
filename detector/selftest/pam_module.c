/* detector selftest: a PAM module in the shape credential stealers ship (pam_sm_authenticate
 * sees the password). It reads nothing and answers PAM_IGNORE (25) to every call. */
int pam_sm_authenticate(void *pamh, int flags, int argc, const char **argv) { return 25; }
int pam_sm_setcred(void *pamh, int flags, int argc, const char **argv) { return 25; }
