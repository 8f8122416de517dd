// Log Router, wire side: serves this node's log store on /openfarm/logs/1.0.0 and tails any peer's.
// One request per stream; see PROTOCOL.md for the bytes. Built as a libp2p service:
// `services: { logs: logService({ store }) }`.

import { setMaxListeners } from 'node:events'
import {
  type ComponentLogger,
  type IncomingStreamData,
  InvalidParametersError,
  type Logger,
  type PeerId,
  type Startable,
  type Stream,
  serviceCapabilities,
} from '@libp2p/interface'
import type { ConnectionManager, Registrar } from '@libp2p/interface-internal'
import { linked, untilOrAbort } from './answer.ts'
import { checkRequest } from './codec.ts'
import * as c from './constants.ts'
import { LogServiceNotStartedError, LogTailAbortedError } from './errors.ts'
import { type LogStats, serveStream } from './serve.ts'
import { tailLocal, tailStream } from './tail.ts'
import type { LogEnd, LogLine, LogRequest, LogSource } from './types.ts'

export * from './codec.ts'
export * from './constants.ts'
export * from './errors.ts'
export type { LogStats } from './serve.ts'
export * from './types.ts'

export interface LogServiceInit {
  /** The node's log store, served to every peer that asks. */
  readonly store: LogSource
  /** Requests served at once over all peers; more are answered `busy` (default 256). */
  readonly maxServing?: number
  /** A server waits this long for the request frame (default 10 s). */
  readonly requestTimeoutMs?: number
  /** tail() waits this long for the connection, the stream and the first frame (default 15 s). */
  readonly openTimeoutMs?: number
}

export interface LogServiceComponents {
  registrar: Registrar
  connectionManager: ConnectionManager
  peerId: PeerId
  logger: ComponentLogger
}

export interface LogService {
  readonly stats: Readonly<LogStats>
  /**
   * The lines of one attempt as `peer` holds them (dialling it if need be; this node's own id reads the
   * local store), from `req.from`, then one LogEnd. With `req.follow` it keeps yielding new lines until
   * the attempt ends. Throws UnknownAttemptError, LogRequestRefusedError, InvalidLogRequestError,
   * LogTailAbortedError (timeout, signal, stop) or UnexpectedLogEndError. Stopping the iteration closes the stream.
   */
  tail(peer: PeerId, req: LogRequest, options?: { signal?: AbortSignal }): AsyncGenerator<LogLine | LogEnd>
}

export function logService(init: LogServiceInit): (components: LogServiceComponents) => LogService {
  return (components) => new LogRouter(components, init)
}

class LogRouter implements LogService, Startable {
  readonly [Symbol.toStringTag] = '@openfarm/logs'
  readonly [serviceCapabilities]: string[] = ['@openfarm/logs']
  readonly stats: LogStats = { served: 0, refused: 0, framesSent: 0, linesSent: 0, serving: 0 }
  readonly #components: LogServiceComponents
  readonly #store: LogSource
  readonly #log: Logger
  readonly #maxServing: number
  readonly #requestTimeoutMs: number
  readonly #openTimeoutMs: number
  readonly #running = new Set<Promise<void>>()
  #shutdown = new AbortController()
  #started = false

  constructor(components: LogServiceComponents, init: LogServiceInit) {
    this.#components = components
    this.#store = init.store
    this.#log = components.logger.forComponent('openfarm:logs')
    this.#maxServing = init.maxServing ?? c.DEFAULT_MAX_SERVING
    this.#requestTimeoutMs = init.requestTimeoutMs ?? c.DEFAULT_REQUEST_TIMEOUT_MS
    this.#openTimeoutMs = init.openTimeoutMs ?? c.DEFAULT_OPEN_TIMEOUT_MS
    for (const [key, value] of Object.entries({
      maxServing: this.#maxServing,
      requestTimeoutMs: this.#requestTimeoutMs,
      openTimeoutMs: this.#openTimeoutMs,
    })) {
      if (!Number.isSafeInteger(value) || value <= 0) {
        throw new InvalidParametersError(`logService: ${key} must be a positive integer, got ${value}`)
      }
    }
  }

  async start(): Promise<void> {
    this.#shutdown = new AbortController()
    setMaxListeners(Infinity, this.#shutdown.signal)
    await this.#components.registrar.handle(c.PROTOCOL, this.#onStream, {
      maxInboundStreams: c.MAX_INBOUND_STREAMS,
      maxOutboundStreams: c.MAX_OUTBOUND_STREAMS,
    })
    this.#started = true
  }

  /**
   * Before libp2p closes its connections: no new requests, and what is being served gets a moment to
   * end by itself (its attempt has ended: its followers get the END).
   */
  async beforeStop(): Promise<void> {
    this.#started = false
    if (this.#running.size > 0) {
      const served = Promise.allSettled([...this.#running]).then(() => undefined)
      await untilOrAbort(served, AbortSignal.timeout(c.STOP_GRACE_MS))
    }
  }

  async stop(): Promise<void> {
    this.#started = false
    await this.#components.registrar.unhandle(c.PROTOCOL)
    this.#shutdown.abort(new LogTailAbortedError('the log service stopped'))
    await Promise.allSettled([...this.#running])
  }

  async *tail(
    peer: PeerId,
    req: LogRequest,
    options: { signal?: AbortSignal } = {},
  ): AsyncGenerator<LogLine | LogEnd> {
    checkRequest(req)
    if (!this.#started) throw new LogServiceNotStartedError('the log service is not started')
    const link = linked(options.signal, this.#shutdown.signal)
    try {
      if (peer.equals(this.#components.peerId)) {
        yield* tailLocal(this.#store, req, link.signal)
        return
      }
      const open = linked(link.signal, AbortSignal.timeout(this.#openTimeoutMs))
      let stream: Stream
      try {
        const connection = await this.#components.connectionManager.openConnection(peer, {
          signal: open.signal,
        })
        stream = await connection.newStream(c.PROTOCOL, { signal: open.signal })
      } catch (err) {
        if (!open.signal.aborted) throw err
        throw new LogTailAbortedError(`could not open a log stream to ${peer} in time`, { cause: err })
      } finally {
        open.clear()
      }
      yield* tailStream(stream, req, link.signal, this.#openTimeoutMs)
    } finally {
      link.clear()
    }
  }

  readonly #onStream = ({ stream }: IncomingStreamData): void => {
    if (!this.#started) {
      stream.abort(new LogServiceNotStartedError('the log service is not started'))
      return
    }
    const run = serveStream(stream, {
      source: this.#store,
      log: this.#log,
      stats: this.stats,
      maxServing: this.#maxServing,
      requestTimeoutMs: this.#requestTimeoutMs,
      signal: this.#shutdown.signal,
    }).catch((err: unknown) => this.#log.error('serving a log stream failed - %e', err))
    this.#running.add(run)
    void run.finally(() => this.#running.delete(run))
  }
}
