// Images: thumbnails and full downloads of tele-expertise images, and the resumable upload that
// browsers use (one chunk per unary call, resumed at the offset the server acknowledged).

import { useEffect, useState } from "preact/hooks";
import { Code, ConnectError } from "@connectrpc/connect";
import { client } from "./api";
import { ExpertiseService } from "./gen/telehealth/v1/expertise_pb";
import { WoundService } from "./gen/telehealth/v1/wound_pb";
import {
  ImageContentType,
  ImageUploadState,
  ImageKind,
  type ImageInfo,
  type ImageUploadHeaderSchema,
  type ImageUploadResult,
} from "./gen/telehealth/v1/images_pb";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { BodySiteSchema } from "./gen/telehealth/v1/common_pb";
import { formatDateTime } from "./format";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";

/** Chunks stay well under the 1 MiB limit so a slow phone link shows progress often. */
export const CHUNK_BYTES = 256 * 1024;

export function Thumbnail({ requestId, image, onOpen }: { requestId: string; image: ImageInfo; onOpen?: () => void }) {
  const [url, setUrl] = useState<string>();
  useEffect(() => {
    let made: string | undefined;
    client(ExpertiseService)
      .getImageThumbnail({ requestId, imageId: image.imageId, maxEdgePx: 240 })
      .then((answer) => {
        made = URL.createObjectURL(new Blob([answer.thumbnail!.jpegData as BlobPart], { type: "image/jpeg" }));
        setUrl(made);
      })
      .catch(() => setUrl(undefined));
    return () => made && URL.revokeObjectURL(made);
  }, [requestId, image.imageId]);
  const alt = `Image ${image.caption || ""} du ${formatDateTime(image.capturedAt ?? image.uploadedAt)}`;
  const picture = url ? <img src={url} alt={alt} width={120} /> : <span class="thumb-placeholder">…</span>;
  return onOpen ? (
    <button type="button" class="thumb" onClick={onOpen} aria-label={`Ouvrir : ${alt}`}>
      {picture}
    </button>
  ) : (
    <span class="thumb">{picture}</span>
  );
}

/** The whole image of a request, as a Blob (streamed in chunks). */
export async function downloadExpertiseImage(requestId: string, imageId: string): Promise<Blob> {
  const parts: Uint8Array[] = [];
  let type = "image/jpeg";
  for await (const message of client(ExpertiseService).downloadImage({ requestId, imageId })) {
    if (message.part.case === "chunk") parts.push(message.part.value.data);
    if (message.part.case === "image" && message.part.value.contentType === ImageContentType.PNG) type = "image/png";
  }
  return new Blob(parts as BlobPart[], { type });
}

export async function sha256Hex(data: Blob): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", await data.arrayBuffer());
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Where an upload goes: a wound (pending photo) or a tele-expertise request. */
export type UploadTarget = { woundId: string } | { requestId: string };

export interface UploadJob {
  target: UploadTarget;
  sessionId: string;
  file: Blob;
  sha256: string;
  kind: ImageKind;
  bodySite?: MessageInitShape<typeof BodySiteSchema>;
  caption?: string;
  capturedAt?: Date;
}

/**
 * Sends what the server does not have yet and returns the stored image. Safe to call again after
 * any failure (network cut, reload): it asks the server where the session stands first.
 */
export async function upload(job: UploadJob, onProgress: (sent: number) => void): Promise<ImageUploadResult> {
  let offset = await acknowledgedOffset(job);
  if (typeof offset !== "number") return offset;
  onProgress(offset);
  for (;;) {
    const end = Math.min(offset + CHUNK_BYTES, job.file.size);
    const data = new Uint8Array(await job.file.slice(offset, end).arrayBuffer());
    const image: MessageInitShape<typeof ImageUploadHeaderSchema> = {
      uploadSessionId: job.sessionId,
      resumeOffset: BigInt(offset),
      totalSizeBytes: BigInt(job.file.size),
      declaredKind: job.kind,
      bodySite: job.bodySite,
      clientSha256Hex: job.sha256,
      caption: job.caption ?? "",
      capturedAt: job.capturedAt ? timestampFromDate(job.capturedAt) : undefined,
    };
    const chunk = { offset: BigInt(offset), data };
    const answer: { acknowledgedOffset: bigint; result?: ImageUploadResult } =
      "woundId" in job.target
        ? await client(WoundService).uploadPhotoPart({ header: { woundId: job.target.woundId, image }, chunk })
        : await client(ExpertiseService).attachImagePart({ header: { requestId: job.target.requestId, image }, chunk });
    if (answer.result?.image) {
      onProgress(job.file.size);
      return answer.result;
    }
    offset = Number(answer.acknowledgedOffset);
    onProgress(offset);
  }
}

/** The offset to go on from, or the result when the session already completed. */
async function acknowledgedOffset(job: UploadJob): Promise<number | ImageUploadResult> {
  try {
    const answer =
      "woundId" in job.target
        ? await client(WoundService).getPhotoUploadStatus({ woundId: job.target.woundId, uploadSessionId: job.sessionId })
        : await client(ExpertiseService).getImageUploadStatus({
            requestId: job.target.requestId,
            uploadSessionId: job.sessionId,
          });
    const status = answer.status!;
    if (status.state === ImageUploadState.COMPLETED && status.result) return status.result;
    return Number(status.acknowledgedOffset);
  } catch (error) {
    // Never started (or expired): start from the beginning.
    if (ConnectError.from(error).code === Code.NotFound) return 0;
    throw error;
  }
}
