/* Wine 8 has no bcryptprimitives.dll, which Rust's std on Windows (1.78+) loads for
 * ProcessPrng, its source of random bytes; every Windows 10+ has it. This stand-in, placed
 * beside the test executables run under wine by scripts/cross_test.py (never shipped), gives
 * ProcessPrng from advapi32's RtlGenRandom (SystemFunction036), in chunks, since that takes a
 * 32-bit length. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x40000000 ? 0x40000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
