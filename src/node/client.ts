// A client of a node's local API, for the CLI and the tests: finds the node through its data
// directory's api.json, sends the token, and turns failures into named errors a user can act on.

import { readFile } from 'node:fs/promises'
import type { ApiFile } from './api.ts'
import { dataPaths } from './paths.ts'

export class NodeNotRunningError extends Error {
  static override readonly name = 'NodeNotRunningError'
  override readonly name = 'NodeNotRunningError'
}

/** An error the node answered with: `remoteName` is its error class (UnknownJobError, ...). */
export class ApiError extends Error {
  static override readonly name = 'ApiError'
  override readonly name = 'ApiError'
  readonly status: number
  readonly remoteName: string
  constructor(status: number, remoteName: string, message: string) {
    super(message)
    this.status = status
    this.remoteName = remoteName
  }
}

export class ApiClient {
  readonly api: ApiFile
  private readonly dataDir: string

  private constructor(api: ApiFile, dataDir: string) {
    this.api = api
    this.dataDir = dataDir
  }

  static async connect(dataDir: string): Promise<ApiClient> {
    let text: string
    try {
      text = await readFile(dataPaths(dataDir).api, 'utf8')
    } catch {
      throw new NodeNotRunningError(
        `no node is running with data directory ${dataDir}: start one with \`openfarm join\``,
      )
    }
    return new ApiClient(JSON.parse(text) as ApiFile, dataDir)
  }

  async request<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
    let res: Response
    try {
      res = await fetch(`${this.api.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${this.api.token}`, 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(30_000),
      })
    } catch (err) {
      throw new NodeNotRunningError(
        `the node of ${this.dataDir} does not answer at ${this.api.url} (stopped or crashed?): start it with \`openfarm join\``,
        { cause: err },
      )
    }
    const data = (await res.json().catch(() => null)) as { error?: { name: string; message: string } } | null
    if (!res.ok) {
      throw new ApiError(
        res.status,
        data?.error?.name ?? 'Error',
        data?.error?.message ?? `HTTP ${res.status}`,
      )
    }
    return data as T
  }

  get<T>(path: string): Promise<T> {
    return this.request<T>('GET', path)
  }

  post<T>(path: string, body?: unknown): Promise<T> {
    return this.request<T>('POST', path, body ?? {})
  }

  /** A streamed answer of one JSON value per line (logs --follow), until it ends or `signal` aborts. */
  async *lines<T>(path: string, signal: AbortSignal): AsyncGenerator<T> {
    const res = await fetch(`${this.api.url}${path}`, {
      headers: { authorization: `Bearer ${this.api.token}` },
      signal,
    }).catch((err) => {
      if (signal.aborted) return null
      throw new NodeNotRunningError(`the node of ${this.dataDir} does not answer`, { cause: err })
    })
    if (res === null) return
    if (!res.ok || res.body === null) {
      const data = (await res.json().catch(() => null)) as {
        error?: { name: string; message: string }
      } | null
      throw new ApiError(
        res.status,
        data?.error?.name ?? 'Error',
        data?.error?.message ?? `HTTP ${res.status}`,
      )
    }
    const decoder = new TextDecoder()
    let buf = ''
    try {
      for await (const chunk of res.body) {
        buf += decoder.decode(chunk as Uint8Array, { stream: true })
        let i = buf.indexOf('\n')
        while (i >= 0) {
          const line = buf.slice(0, i)
          buf = buf.slice(i + 1)
          if (line.trim() !== '') yield JSON.parse(line) as T
          i = buf.indexOf('\n')
        }
      }
    } catch (err) {
      if (!signal.aborted) throw err
    }
  }

  /** Calls `onChange` on every change event until `signal` aborts. */
  async watch(onChange: () => void | Promise<void>, signal: AbortSignal): Promise<void> {
    const res = await fetch(`${this.api.url}/v1/events`, {
      headers: { authorization: `Bearer ${this.api.token}` },
      signal,
    }).catch((err) => {
      if (signal.aborted) return null
      throw new NodeNotRunningError(`the node of ${this.dataDir} does not answer`, { cause: err })
    })
    if (res === null || res.body === null) return
    const decoder = new TextDecoder()
    let buf = ''
    try {
      for await (const chunk of res.body) {
        buf += decoder.decode(chunk as Uint8Array, { stream: true })
        let i = buf.indexOf('\n\n')
        while (i >= 0) {
          if (buf.slice(0, i).includes('event: change')) await onChange()
          buf = buf.slice(i + 2)
          i = buf.indexOf('\n\n')
        }
      }
    } catch (err) {
      if (!signal.aborted) throw err
    }
  }
}
