// The nurse's outbox: an assessment and its photos are written to IndexedDB first, then sent.
// It survives losing the network and reloading the page: each photo resumes at the offset the
// server acknowledged (its upload session id is kept), and the assessment is recorded with an
// idempotency key kept with it, so nothing is stored twice however often a send is retried.

import { Code, ConnectError } from "@connectrpc/connect";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { client, currentIdentity } from "../api";
import { WoundService, type ExudateAmount, type InfectionSign, type TissueType } from "../gen/telehealth/v1/wound_pb";
import { ImageKind } from "../gen/telehealth/v1/images_pb";
import { upload } from "../images";
import { problem } from "../errors";

export interface QueuedPhoto {
  sessionId: string;
  name: string;
  file: Blob;
  sha256: string;
  size: number;
  sent: number;
  imageId?: string;
}

export interface QueuedAssessment {
  /** Also the idempotency key of `RecordAssessment`. */
  id: string;
  woundId: string;
  /** Where the wound is (every wound photo declares it). */
  bodySite: { region: number; laterality: number; description: string; snomedCtCode: string };
  label: string;
  assessedAt: string;
  lengthCm: number;
  widthCm: number;
  depthCm?: number;
  tissue: TissueType;
  exudate: ExudateAmount;
  painScore?: number;
  infectionSigns: InfectionSign[];
  notes: string;
  photos: QueuedPhoto[];
  state: "waiting" | "sending" | "done" | "failed";
  message?: string;
  assessmentId?: string;
  alerts?: number;
  /** SHA-256 of each photo as the server received it (before it stripped metadata). */
  received?: string[];
}

const DB = "telehealth-outbox";
const STORE = "assessments";

function open(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE, { keyPath: "id" });
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function transact<T>(mode: IDBTransactionMode, work: (store: IDBObjectStore) => IDBRequest<T>): Promise<T> {
  const db = await open();
  try {
    return await new Promise<T>((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const request = work(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(request.result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  } finally {
    db.close();
  }
}

export function listQueued(): Promise<QueuedAssessment[]> {
  return transact("readonly", (store) => store.getAll() as IDBRequest<QueuedAssessment[]>);
}

async function save(item: QueuedAssessment): Promise<void> {
  await transact("readwrite", (store) => store.put(item));
  notify();
}

export async function discard(id: string): Promise<void> {
  await transact("readwrite", (store) => store.delete(id));
  notify();
}

export async function enqueue(item: QueuedAssessment): Promise<void> {
  await save(item);
  void sendAll();
}

const listeners = new Set<() => void>();

export function onOutboxChange(listener: () => void): () => void {
  listeners.add(listener);
  return () => void listeners.delete(listener);
}

function notify(): void {
  listeners.forEach((listener) => listener());
}

/** Answers that will not change by retrying: the item needs the nurse's attention. */
const FINAL = new Set([
  Code.InvalidArgument,
  Code.FailedPrecondition,
  Code.PermissionDenied,
  Code.NotFound,
  Code.AlreadyExists,
  Code.OutOfRange,
]);

let running: Promise<void> | undefined;
let retry: number | undefined;

/** Sends every waiting item, one at a time; retries by itself after a network failure. */
export function sendAll(): Promise<void> {
  if (!currentIdentity()) return Promise.resolve();
  running ??= (async () => {
    try {
      for (const item of await listQueued()) {
        if (item.state === "done" || item.state === "failed") continue;
        // After a network failure the next items would fail too: wait for the retry.
        if (!(await send(item))) break;
      }
    } finally {
      running = undefined;
    }
  })();
  return running;
}

/** Sends one item; false when the network failed (it stays queued). */
async function send(item: QueuedAssessment): Promise<boolean> {
  try {
    item.state = "sending";
    item.message = undefined;
    await save(item);
    for (const photo of item.photos) {
      if (photo.imageId) continue;
      let saved = Date.now();
      const result = await upload(
        {
          target: { woundId: item.woundId },
          sessionId: photo.sessionId,
          file: photo.file,
          sha256: photo.sha256,
          kind: ImageKind.WOUND_PHOTO,
          bodySite: item.bodySite,
          caption: "",
          capturedAt: new Date(item.assessedAt),
        },
        (sent) => {
          photo.sent = sent;
          // Progress is shown from memory; it is written down at most twice a second.
          if (Date.now() - saved > 500) {
            saved = Date.now();
            void save(item);
          } else notify();
        },
      );
      photo.imageId = result.image!.imageId;
      photo.sent = photo.size;
      await save(item);
    }
    const answer = await client(WoundService).recordAssessment({
      idempotencyKey: item.id,
      woundId: item.woundId,
      measurements: {
        assessedAt: timestampFromDate(new Date(item.assessedAt)),
        lengthCm: item.lengthCm,
        widthCm: item.widthCm,
        depthCm: item.depthCm,
        tissueType: item.tissue,
        exudate: item.exudate,
        painScore: item.painScore,
        infectionSigns: item.infectionSigns,
        notes: item.notes,
        photoImageIds: item.photos.map((p) => p.imageId!),
      },
    });
    item.state = "done";
    item.assessmentId = answer.assessment?.assessmentId;
    item.alerts = answer.raisedAlerts.length;
    item.received = answer.assessment?.photos.map((photo) => photo.originalSha256Hex) ?? [];
    await save(item);
    return true;
  } catch (error) {
    const shown = problem(error);
    const final = FINAL.has(ConnectError.from(error).code);
    item.state = final ? "failed" : "waiting";
    item.message = final ? `${shown.message} (${shown.detail})` : "En attente du réseau…";
    await save(item);
    if (!final) {
      window.clearTimeout(retry);
      retry = window.setTimeout(() => void sendAll(), 5_000);
    }
    return final;
  }
}

window.addEventListener("online", () => void sendAll());
