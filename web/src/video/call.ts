// A teleconsultation call in the browser: WebRTC peer connections, one per other participant,
// signalled through the suite's browser variant (`OpenSignal` server stream + `SendSignal`).
// The newcomer offers to the peers already there; the others answer. A peer that reconnects
// (`peer_replaced`) is offered to again.

import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { client } from "../api";
import {
  SignallingService,
  type IceServerSet,
  type SignalRequestSchema,
  type SignalResponse,
} from "../gen/telehealth/v1/signalling_pb";

type Outgoing = MessageInitShape<typeof SignalRequestSchema>["message"];

export interface CallEvents {
  remote(participantId: string, stream: MediaStream): void;
  left(participantId: string): void;
  status(text: string): void;
}

export class Call {
  private peers = new Map<string, RTCPeerConnection>();
  private inbox = "";
  private sequence = 0n;
  private iceServers: RTCIceServer[] = [];
  private abort = new AbortController();
  private keepAlive: number | undefined;
  private queued: Outgoing[] = [];
  /** Sends go one after the other, so the peer gets them in order (offer before candidates). */
  private sending: Promise<void> = Promise.resolve();
  /** Candidates that arrived before the description they belong to. */
  private early = new Map<string, RTCIceCandidateInit[]>();

  constructor(
    private roomId: string,
    private local: MediaStream,
    private events: CallEvents,
  ) {}

  /** Joins and runs until the call ends; resolves when the stream closes. */
  async run(): Promise<void> {
    const stream = client(SignallingService).openSignal(
      { clientSequence: 1n, message: { case: "join", value: { roomId: this.roomId, clientPlatform: "navigateur web" } } },
      {
        signal: this.abort.signal,
        onHeader: (headers) => {
          this.inbox = headers.get("x-telehealth-signal-inbox") ?? "";
          const waiting = this.queued;
          this.queued = [];
          waiting.forEach((message) => void this.send(message));
        },
      },
    );
    this.sequence = 1n;
    try {
      for await (const event of stream) await this.handle(event);
    } finally {
      window.clearInterval(this.keepAlive);
      this.peers.forEach((peer) => peer.close());
    }
  }

  /** Replaces the camera sent to every peer (the second camera, a dermatoscope). */
  async replaceVideo(track: MediaStreamTrack): Promise<void> {
    for (const peer of this.peers.values()) {
      const sender = peer.getSenders().find((s) => s.track?.kind === "video");
      await sender?.replaceTrack(track);
    }
  }

  /** The connections, for statistics. */
  connections(): RTCPeerConnection[] {
    return [...this.peers.values()];
  }

  async leave(): Promise<void> {
    await this.send({ case: "leave", value: { reason: "fin de la consultation" } }).catch(() => undefined);
    this.abort.abort();
  }

  private send(message: Outgoing): Promise<void> {
    if (!this.inbox) {
      this.queued.push(message);
      return Promise.resolve();
    }
    const next = this.sending.then(async () => {
      this.sequence += 1n;
      await client(SignallingService).sendSignal({
        inboxId: this.inbox,
        message: { clientSequence: this.sequence, message },
      });
    });
    this.sending = next.catch(() => undefined);
    return next;
  }

  private async describe(participantId: string, description: RTCSessionDescriptionInit): Promise<void> {
    const peer = this.connection(participantId, description.type === "offer");
    if (!peer) return;
    await peer.setRemoteDescription(description);
    for (const candidate of this.early.get(participantId) ?? []) await peer.addIceCandidate(candidate).catch(() => undefined);
    this.early.delete(participantId);
  }

  private async handle(response: SignalResponse): Promise<void> {
    const event = response.event;
    switch (event.case) {
      case "joined": {
        this.iceServers = toRtc(event.value.iceServers);
        const every = Math.max(5, event.value.keepaliveIntervalSeconds || 10) * 1000;
        this.keepAlive = window.setInterval(
          () => void this.send({ case: "keepAlive", value: { clientTime: timestampFromDate(new Date()) } }).catch(() => undefined),
          every,
        );
        this.events.status(event.value.peers.length ? "Connexion aux participants…" : "En attente des autres participants…");
        for (const peer of event.value.peers) await this.offer(peer.participantId);
        break;
      }
      case "peerJoined":
        this.events.status("Un participant arrive…");
        break;
      case "peerReplaced":
        if (event.value.peer) {
          this.drop(event.value.peer.participantId);
          await this.offer(event.value.peer.participantId);
        }
        break;
      case "peerLeft":
      case "peerDropped":
        this.drop(event.value.participantId);
        this.events.left(event.value.participantId);
        break;
      case "offer": {
        await this.describe(event.value.fromParticipantId, { type: "offer", sdp: event.value.sdp });
        const peer = this.connection(event.value.fromParticipantId, false);
        if (!peer) break;
        const answer = await peer.createAnswer();
        await peer.setLocalDescription(answer);
        await this.send({ case: "answer", value: { toParticipantId: event.value.fromParticipantId, sdp: answer.sdp ?? "" } });
        break;
      }
      case "answer":
        await this.describe(event.value.fromParticipantId, { type: "answer", sdp: event.value.sdp });
        break;
      case "iceCandidate": {
        const from = event.value.fromParticipantId;
        const candidate: RTCIceCandidateInit = {
          candidate: event.value.candidate,
          sdpMid: event.value.sdpMid || null,
          sdpMLineIndex: event.value.sdpMLineIndex ?? null,
          usernameFragment: event.value.usernameFragment || null,
        };
        const peer = this.peers.get(from);
        if (peer?.remoteDescription) await peer.addIceCandidate(candidate).catch(() => undefined);
        else this.early.set(from, [...(this.early.get(from) ?? []), candidate]);
        break;
      }
      case "error":
        this.events.status(`Signalisation : ${event.value.message}`);
        break;
      case "roomClosed":
        this.events.status("La consultation est terminée.");
        break;
      case "replaced":
        this.events.status("Cette consultation a été ouverte dans un autre onglet.");
        break;
      default:
        break;
    }
  }

  private connection(participantId: string, create: boolean): RTCPeerConnection | undefined {
    let peer = this.peers.get(participantId);
    if (peer || !create) return peer;
    peer = new RTCPeerConnection({ iceServers: this.iceServers });
    this.local.getTracks().forEach((track) => peer!.addTrack(track, this.local));
    peer.onicecandidate = ({ candidate }) => {
      if (!candidate?.candidate) return;
      void this.send({
        case: "iceCandidate",
        value: {
          toParticipantId: participantId,
          candidate: candidate.candidate,
          sdpMid: candidate.sdpMid ?? "",
          sdpMLineIndex: candidate.sdpMLineIndex ?? undefined,
          usernameFragment: candidate.usernameFragment ?? "",
        },
      }).catch(() => undefined);
    };
    peer.ontrack = ({ streams }) => {
      if (streams[0]) this.events.remote(participantId, streams[0]);
    };
    peer.onconnectionstatechange = () => {
      if (peer!.connectionState === "connected") this.events.status("Connecté.");
      if (peer!.connectionState === "failed") this.events.status("La connexion vidéo a échoué ; nouvel essai…");
    };
    this.peers.set(participantId, peer);
    return peer;
  }

  private async offer(participantId: string): Promise<void> {
    const peer = this.connection(participantId, true)!;
    const offer = await peer.createOffer();
    await peer.setLocalDescription(offer);
    await this.send({ case: "offer", value: { toParticipantId: participantId, sdp: offer.sdp ?? "" } });
  }

  private drop(participantId: string): void {
    this.early.delete(participantId);
    this.peers.get(participantId)?.close();
    this.peers.delete(participantId);
  }
}

function toRtc(set: IceServerSet | undefined): RTCIceServer[] {
  if (!set) return [];
  return set.servers.map((s) => ({
    urls: s.urls,
    ...(s.username ? { username: s.username, credential: s.credential } : {}),
  }));
}
