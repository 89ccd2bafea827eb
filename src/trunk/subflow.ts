/**
 * One TCP connection of a trunk, after its handshake: frame decoding, writing, PING/PONG RTT
 * and liveness. It owns its socket's listeners; decisions about flows belong to the trunk.
 */
import type { Socket } from 'node:net'
import { isPepError, PepErrorCodes, ProtocolError } from '../common/errors.js'
import { FrameDecoder } from '../common/wire/decode.js'
import { encodeDataHeader, encodeFrame } from '../common/wire/encode.js'
import { ResetReason, type Frame, type ResetReasonCode } from '../common/wire/frame.js'
import type { DataToSend } from '../core/send-buffer.js'
import { RecordOpener, RecordSealer } from '../common/wire/record.js'
import { FRAME_HEADER_LENGTH } from '../common/wire/frame.js'
import type { SubflowKeys } from './handshake.js'
import { Ticker } from './ticker.js'

/** Weight of a new RTT sample in the smoothed RTT (RFC 6298's alpha, 1/8). */
const SRTT_GAIN = 1 / 8

/** PING tokens carry the send time in microseconds; the clock gives milliseconds. */
const US_PER_MS = 1000

/** What a subflow reports to its trunk. */
export interface SubflowEvents {
  /** Frames decoded from one read. */
  onFrames(subflow: Subflow, frames: readonly Frame[]): void
  /** The socket can take more. */
  onWritable(subflow: Subflow): void
  /** The subflow is gone; `why` is one line. */
  onClosed(subflow: Subflow, why: string, error: ProtocolError | undefined): void
}

/** Settings of a subflow. */
export interface SubflowOptions {
  readonly id: number
  /** Index in the dialer's set (HELLO subflow index). */
  readonly index: number
  readonly pathId: number
  /** Largest frame body we accept (announced in our hello). */
  readonly maxFrameBody: number
  /** Bytes queued in user space above which the subflow is not writable. */
  readonly queueLimitBytes: number
  readonly pingIntervalMs: number
  readonly pingTimeoutMs: number
  readonly now: () => number
  /** Weight of the subflow's path, for the weighted scheduler. */
  readonly weight: number
  /** Traffic keys: frames travel in AES-256-GCM records (HELLO_FLAG_ENCRYPT). */
  readonly keys?: SubflowKeys | undefined
  /** Measures the socket's delivery rate in bytes/s (TCP_INFO); sampled every ping interval. */
  readonly sampleRate?: (socket: Socket) => number
}

/** A live subflow. Schedulers never see it: the trunk gives them plain views of it. */
export class Subflow {
  readonly id: number
  readonly index: number
  readonly pathId: number
  /** Round-trip time of PING to PONG through the whole subflow (queues, TCP recovery), ms. */
  srttMs = 0
  /** The kernel's smoothed RTT of the socket (tcpi_rtt), ms; 0 until the rate loop read it. */
  tcpSrttMs = 0
  /** The socket's congestion window (tcpi_snd_cwnd), segments; 0 until the rate loop read it. */
  cwndSegments = 0
  /** Delivery rate from TCP_INFO, bytes per second; 0 until sampled. */
  rateBytesPerSec = 0
  readonly weight: number
  /** Frames and bytes in each direction, for stats. */
  bytesSent = 0
  bytesReceived = 0
  private readonly socket: Socket
  private readonly decoder: FrameDecoder
  private readonly sealer: RecordSealer | undefined
  private readonly opener: RecordOpener | undefined
  private readonly events: SubflowEvents
  private readonly opts: SubflowOptions
  private lastReceivedMs: number
  private readonly pinger: Ticker
  private closed = false
  private closing = false

  constructor(socket: Socket, opts: SubflowOptions, events: SubflowEvents) {
    this.socket = socket
    this.opts = opts
    this.id = opts.id
    this.index = opts.index
    this.pathId = opts.pathId
    this.weight = opts.weight
    this.events = events
    this.decoder = new FrameDecoder(opts.maxFrameBody)
    if (opts.keys !== undefined) {
      this.sealer = new RecordSealer(opts.keys.send)
      this.opener = new RecordOpener(opts.keys.receive, opts.maxFrameBody + FRAME_HEADER_LENGTH)
    }
    this.lastReceivedMs = opts.now()
    socket.setNoDelay(true)
    socket.on('data', (chunk: Buffer) => {
      this.onData(chunk)
    })
    socket.on('drain', () => {
      this.events.onWritable(this)
    })
    socket.on('error', (err: NodeJS.ErrnoException) => {
      this.close(`socket error ${err.code ?? err.message}`, undefined)
    })
    socket.on('end', () => {
      this.close(this.closing ? 'peer closed after GOAWAY' : 'peer closed the subflow', undefined)
    })
    socket.on('close', () => {
      this.close('socket closed', undefined)
    })
    this.pinger = new Ticker(opts.pingIntervalMs, () => {
      this.onPingTimer()
    }).start()
    // The handshake paused the socket so that no frame is read before these listeners exist.
    socket.resume()
  }

  /** True while the socket takes more without queueing past the limit. */
  get writable(): boolean {
    return !this.closed && this.socket.writableLength < this.opts.queueLimitBytes
  }

  /** Bytes queued in user space. */
  get queuedBytes(): number {
    return this.socket.writableLength
  }

  /** True once closed. */
  get isClosed(): boolean {
    return this.closed
  }

  /** Peer address, for logs. */
  get remote(): string {
    return `${this.socket.remoteAddress ?? '?'}:${this.socket.remotePort ?? 0}`
  }

  /** The socket, for the native addon (TCP_INFO) and tests. */
  get rawSocket(): Socket {
    return this.socket
  }

  /** Feed bytes that arrived together with the handshake. */
  feed(rest: Uint8Array): void {
    if (rest.length > 0) this.onData(rest)
  }

  /** Write a control frame now, whatever the queue (control frames are small and few). */
  writeFrame(frame: Frame): void {
    if (this.closed) return
    const bytes = encodeFrame(frame)
    this.bytesSent += bytes.length
    if (this.sealer === undefined) {
      this.socket.write(bytes)
      return
    }
    this.socket.cork()
    for (const b of this.sealer.seal([bytes])) this.socket.write(b)
    this.socket.uncork()
  }

  /** Write one DATA frame: header and payload back to back, the payload not copied. */
  writeData(flowId: number, d: DataToSend): void {
    if (this.closed) return
    const header = encodeDataHeader(flowId, d.offset, d.payload.length, d.fin)
    this.bytesSent += header.length + d.payload.length
    this.socket.cork()
    if (this.sealer !== undefined) {
      for (const b of this.sealer.seal([header, d.payload])) this.socket.write(b)
    } else {
      this.socket.write(header)
      if (d.payload.length > 0) this.socket.write(d.payload)
    }
    this.socket.uncork()
  }

  /** Close on purpose: GOAWAY, then FIN. */
  goAway(reason: ResetReasonCode, message: string): void {
    if (this.closed) return
    this.closing = true
    this.writeFrame({ type: 'goaway', flowId: 0, reason, message })
    this.socket.end()
  }

  /** Close at once (RST), e.g. after a protocol error or a ping timeout. */
  close(why: string, error: ProtocolError | undefined): void {
    if (this.closed) return
    this.closed = true
    this.pinger.stop()
    if (!this.socket.destroyed) this.socket.resetAndDestroy()
    this.events.onClosed(this, why, error)
  }

  /** Record what the rate loop read from TCP_INFO. */
  noteTcp(srttMs: number, cwndSegments: number): void {
    this.tcpSrttMs = srttMs
    this.cwndSegments = cwndSegments
  }

  /** Record a PONG. */
  onPong(token: number): void {
    const sample = this.opts.now() - token / US_PER_MS
    if (sample < 0) return
    this.srttMs = this.srttMs === 0 ? sample : this.srttMs * (1 - SRTT_GAIN) + sample * SRTT_GAIN
  }

  private onData(chunk: Uint8Array): void {
    if (this.closed) return
    this.lastReceivedMs = this.opts.now()
    this.bytesReceived += chunk.length
    let frames: Frame[]
    try {
      if (this.opener === undefined) frames = this.decoder.push(chunk)
      else {
        frames = []
        for (const plain of this.opener.push(chunk)) frames.push(...this.decoder.push(plain))
      }
    } catch (err) {
      if (isPepError(err) && err instanceof ProtocolError) {
        this.writeFrame({ type: 'goaway', flowId: 0, reason: err.closeReason, message: err.code })
        this.close(`protocol error ${err.code}: ${err.message}`, err)
        return
      }
      throw err
    }
    if (frames.length > 0) this.events.onFrames(this, frames)
  }

  private onPingTimer(): void {
    const now = this.opts.now()
    if (now - this.lastReceivedMs > this.opts.pingTimeoutMs) {
      this.close(
        `no data for ${Math.round(now - this.lastReceivedMs)} ms (ping timeout)`,
        new ProtocolError(PepErrorCodes.TIMEOUT, 'ping timeout', ResetReason.PROTOCOL_ERROR)
      )
      return
    }
    if (this.opts.sampleRate !== undefined) {
      try {
        this.rateBytesPerSec = this.opts.sampleRate(this.socket)
      } catch {
        // the socket is closing; the next tick finds out
      }
    }
    // Token: send time in microseconds, so the PONG carries its own timestamp.
    this.writeFrame({ type: 'ping', flowId: 0, token: Math.round(now * US_PER_MS) })
  }
}
