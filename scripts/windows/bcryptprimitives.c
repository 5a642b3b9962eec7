/* A stand-in for Windows' bcryptprimitives.dll under Wine 8, which lacks it: Rust's standard
 * library asks it for ProcessPrng (random bytes). Forwards to advapi32's SystemFunction036
 * (RtlGenRandom), which Wine has. Built with mingw-w64 by scripts/windows-test.sh; used only to run
 * Windows test binaries under Wine, never shipped. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length) {
    while (length > 0) {
        ULONG chunk = length > 0x7fffffff ? 0x7fffffff : (ULONG)length;
        if (!SystemFunction036(data, chunk)) {
            return FALSE;
        }
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
