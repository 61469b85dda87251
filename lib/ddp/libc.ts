/**
 * The few libc calls the shared-memory transport needs, through Deno FFI (`--allow-ffi`):
 * `open`/`ftruncate`/`mmap` to map a file of /dev/shm into every rank of a node, and the
 * futex syscall so that a rank waiting at a barrier sleeps in the kernel instead of
 * spinning on one of the machine's few cores.
 *
 * @module
 */

const SYMBOLS = {
  open: { parameters: ["buffer", "i32", "i32"], result: "i32" },
  ftruncate: { parameters: ["i32", "i64"], result: "i32" },
  posix_fallocate: { parameters: ["i32", "i64", "i64"], result: "i32" },
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  getppid: { parameters: [], result: "i32" },
  // long syscall(long number, ...): futex(uaddr, op, val, timeout, uaddr2, val3)
  syscall: {
    parameters: ["i64", "pointer", "i32", "i32", "pointer", "pointer", "i32"],
    result: "i64",
  },
} as const;

type Libc = Deno.DynamicLibrary<typeof SYMBOLS>;

let libc: Libc | null = null;

function lib(): Libc {
  if (!libc) {
    try {
      libc = Deno.dlopen("libc.so.6", SYMBOLS);
    } catch (e) {
      throw new Error(
        `Cannot load libc.so.6 for the shared-memory transport (needs --allow-ffi): ${
          (e as Error).message
        }`,
      );
    }
  }
  return libc;
}

const O_RDWR = 0o2, O_CREAT = 0o100;
const PROT_READ = 1, PROT_WRITE = 2, MAP_SHARED = 1, MAP_POPULATE = 0x8000;
const ENOSPC = 28;
const SYS_FUTEX = 202n; // x86-64
const FUTEX_WAIT = 0, FUTEX_WAKE = 1; // not _PRIVATE: the word is shared between processes

/** A file mapped into this process: its bytes, and how to unmap it. */
export interface SharedMapping {
  /** The mapped bytes; writes are seen by every process that maps the file. */
  buffer: ArrayBuffer;
  /** The mapping's address, for futex calls. */
  pointer: Deno.PointerObject;
  byteLength: number;
  /** Unmaps the file (the views into `buffer` must not be used afterwards). */
  unmap(): void;
}

/** How {@linkcode mapSharedFile} makes a mapping. */
export interface MapOptions {
  /**
   * With `create`: allocate the file's pages now (`posix_fallocate`), so that a tmpfs too
   * small for it is an error here rather than a SIGBUS when a page is first touched.
   */
  reserve?: boolean;
  /** Fault every page in at `mmap` (`MAP_POPULATE`), so first touches cost nothing later. */
  populate?: boolean;
}

/** Maps `path` (created and sized to `byteLength` when `create`) shared and read-write. */
export function mapSharedFile(
  path: string,
  byteLength: number,
  create: boolean,
  options: MapOptions = {},
): SharedMapping {
  const { symbols } = lib();
  const cpath = new TextEncoder().encode(path + "\0");
  const fd = symbols.open(cpath, create ? O_RDWR | O_CREAT : O_RDWR, 0o600);
  if (fd < 0) throw new Error(`Cannot open the shared-memory file ${path}`);
  try {
    if (create && symbols.ftruncate(fd, BigInt(byteLength)) !== 0) {
      throw new Error(`Cannot size the shared-memory file ${path} to ${byteLength} bytes`);
    }
    if (create && options.reserve) {
      // returns the error number itself, not -1 and errno
      const err = symbols.posix_fallocate(fd, 0n, BigInt(byteLength));
      if (err !== 0) {
        throw new Error(
          `Cannot reserve ${byteLength} bytes for ${path}: ${
            err === ENOSPC ? "no space left (the tmpfs is too small)" : `error ${err}`
          }`,
        );
      }
    }
    const flags = MAP_SHARED | (options.populate ? MAP_POPULATE : 0);
    const ptr = symbols.mmap(null, BigInt(byteLength), PROT_READ | PROT_WRITE, flags, fd, 0n);
    // MAP_FAILED is (void*)-1
    if (ptr === null || Deno.UnsafePointer.value(ptr) === 0xffffffffffffffffn) {
      throw new Error(`Cannot mmap ${byteLength} bytes of ${path}`);
    }
    const buffer = Deno.UnsafePointerView.getArrayBuffer(ptr, byteLength);
    return {
      buffer,
      pointer: ptr,
      byteLength,
      unmap: () => void symbols.munmap(ptr, BigInt(byteLength)),
    };
  } finally {
    symbols.close(fd); // the mapping outlives the descriptor
  }
}

const timespec = new BigInt64Array(2);

/**
 * Sleeps while the 32-bit word at `pointer + byteOffset` still holds `expected`, at most
 * `timeoutMs`; returns early on a wake-up (or spuriously: callers re-check the word).
 */
export function futexWait(
  pointer: Deno.PointerObject,
  byteOffset: number,
  expected: number,
  timeoutMs: number,
): void {
  timespec[0] = BigInt(Math.floor(timeoutMs / 1000));
  timespec[1] = BigInt(Math.round((timeoutMs % 1000) * 1e6));
  lib().symbols.syscall(
    SYS_FUTEX,
    Deno.UnsafePointer.offset(pointer, byteOffset),
    FUTEX_WAIT,
    expected,
    Deno.UnsafePointer.of(timespec),
    null,
    0,
  );
}

/** Wakes every process sleeping on the word at `pointer + byteOffset`. */
export function futexWake(pointer: Deno.PointerObject, byteOffset: number): void {
  lib().symbols.syscall(
    SYS_FUTEX,
    Deno.UnsafePointer.offset(pointer, byteOffset),
    FUTEX_WAKE,
    0x7fffffff,
    null,
    null,
    0,
  );
}

/** The parent's pid now (1, or a subreaper's, once the parent has died). */
export function parentPid(): number {
  return lib().symbols.getppid();
}
