// A bounded line splitter for child output: memory per stream stays under `maxChars` however long a
// line is; the rest of an overlong line is dropped and counted in a marker. '\n', '\r\n' and a lone
// '\r' (progress bars redraw with it) each end a line.

import { StringDecoder } from 'node:string_decoder'

export const DEFAULT_MAX_LINE_CHARS = 4096

export class LineSplitter {
  private readonly decoder = new StringDecoder('utf8')
  private line = ''
  private dropped = 0
  private afterCR = false

  constructor(
    private readonly emit: (line: string) => void,
    private readonly maxChars: number = DEFAULT_MAX_LINE_CHARS,
  ) {}

  push(chunk: Uint8Array | string): void {
    this.scan(typeof chunk === 'string' ? chunk : this.decoder.write(chunk as Buffer))
  }

  /** Ends the line being read, if any, then emits `text` as a line of its own (a note of ours). */
  note(text: string): void {
    if (this.line.length > 0 || this.dropped > 0) this.flush()
    this.afterCR = false
    this.emit(text)
  }

  /** Emits a last line without a newline, if any. */
  end(): void {
    this.scan(this.decoder.end())
    if (this.line.length > 0 || this.dropped > 0) this.flush()
  }

  private scan(text: string): void {
    let i = 0
    if (this.afterCR && text.startsWith('\n')) i = 1
    this.afterCR = false
    while (i < text.length) {
      const nl = text.indexOf('\n', i)
      const cr = text.indexOf('\r', i)
      const stop = nl === -1 ? cr : cr === -1 ? nl : Math.min(nl, cr)
      if (stop === -1) {
        this.append(text.slice(i))
        return
      }
      this.append(text.slice(i, stop))
      this.flush()
      i = stop + 1
      if (text[stop] === '\r') {
        if (i === text.length) this.afterCR = true
        else if (text[i] === '\n') i += 1
      }
    }
  }

  private append(part: string): void {
    const room = this.maxChars - this.line.length
    if (part.length <= room) {
      this.line += part
    } else {
      this.line += part.slice(0, Math.max(room, 0))
      this.dropped += part.length - Math.max(room, 0)
    }
  }

  private flush(): void {
    const line = this.dropped > 0 ? `${this.line} [... ${this.dropped} more characters cut]` : this.line
    this.line = ''
    this.dropped = 0
    this.emit(line)
  }
}
