/* srmodel_start.c: program entry for aarch64 executables linked without the C library's start files.
 *
 * Why: neither the Android NDK (crtbegin_dynamic.o) nor Debian's arm64 libc dev package (crt1.o) is
 * needed to build srmodel_bench this way. The dynamic linker has already initialised the C library
 * (glibc and bionic both do that from their own constructors), so _start only passes argc/argv from
 * the initial stack to main and exits with its result.
 */
extern int main(int argc, char** argv);
extern void exit(int status) __attribute__((noreturn));

__attribute__((visibility("hidden"), used, noreturn)) void srm_start_c(long* sp) {
  exit(main((int)sp[0], (char**)(sp + 1)));
}

__asm__(
    ".text\n"
    ".global _start\n"
    ".type _start, %function\n"
    "_start:\n"
    "  mov x29, #0\n"
    "  mov x30, #0\n"
    "  mov x0, sp\n"
    "  b srm_start_c\n");
