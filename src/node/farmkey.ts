// The farm key: the pre-shared key of the farm's private network (farmnet.ts), the farm's only secret.
// Users see it as 64 hex characters; on disk it is the 95-byte text libp2p's pnet key files use
// (`/key/swarm/psk/1.0.0/`), mode 0600.
// The farm id (a hash of the key) is public: it names gossip topics and the mDNS service.

import { createHash, randomBytes } from 'node:crypto'
import { chmod, readFile, writeFile } from 'node:fs/promises'

const HEADER = '/key/swarm/psk/1.0.0/\n/base16/\n'
const HEX_RE = /^[0-9a-f]{64}$/

export class InvalidFarmKeyError extends Error {
  static override readonly name = 'InvalidFarmKeyError'
  override readonly name = 'InvalidFarmKeyError'
}

export class FarmKey {
  /** 64 lowercase hex characters. Never log this. */
  readonly hex: string

  private constructor(hex: string) {
    this.hex = hex
  }

  static generate(): FarmKey {
    return new FarmKey(randomBytes(32).toString('hex'))
  }

  /** Accepts the 64-hex form (what `openfarm init` prints) or the full pnet key text. */
  static parse(text: string): FarmKey {
    const t = text.trim()
    const hex = (t.startsWith('/key/swarm/psk/1.0.0/') ? t.split('\n').at(-1)! : t).trim().toLowerCase()
    if (!HEX_RE.test(hex)) {
      throw new InvalidFarmKeyError('a farm key is 64 hex characters, as printed by `openfarm init`')
    }
    return new FarmKey(hex)
  }

  static async load(path: string): Promise<FarmKey> {
    return FarmKey.parse(await readFile(path, 'utf8'))
  }

  async save(path: string): Promise<void> {
    await writeFile(path, this.psk(), { mode: 0o600 })
    await chmod(path, 0o600)
  }

  /** The key file's text, as bytes. */
  psk(): Uint8Array {
    return new TextEncoder().encode(HEADER + this.hex)
  }

  /** The key's 32 bytes, for the private network's handshake. */
  bytes(): Uint8Array {
    return Uint8Array.from(Buffer.from(this.hex, 'hex'))
  }

  /** Public name of the farm: 16 hex characters of a hash of the key. */
  farmId(): string {
    return createHash('sha256').update('openfarm farm id\n').update(this.hex).digest('hex').slice(0, 16)
  }

  toString(): string {
    return `FarmKey(${this.farmId()})`
  }
}

export class WrongFarmError extends Error {
  static override readonly name = 'WrongFarmError'
  override readonly name = 'WrongFarmError'
}

export class NoFarmKeyError extends Error {
  static override readonly name = 'NoFarmKeyError'
  override readonly name = 'NoFarmKeyError'
}

/** The farm key of a data directory: the given one (saved on first use) or the saved one. */
export async function resolveKey(path: string, given: FarmKey | undefined): Promise<FarmKey> {
  let saved: FarmKey | undefined
  try {
    saved = await FarmKey.load(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  if (given === undefined) {
    if (saved === undefined) {
      throw new NoFarmKeyError(
        'no farm key yet: run `openfarm init`, or join with --key KEY from another machine',
      )
    }
    return saved
  }
  if (saved !== undefined && saved.hex !== given.hex) {
    throw new WrongFarmError(
      `this data directory belongs to farm ${saved.farmId()}, not ${given.farmId()}: use another --data directory`,
    )
  }
  if (saved === undefined) await given.save(path)
  return given
}
