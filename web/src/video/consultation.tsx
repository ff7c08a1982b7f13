// The teleconsultation screen, for the doctor (who starts it) and the nurse at the patient's home
// (who checks in): local and remote video, camera and microphone choice, mute, a second camera
// (a USB dermatoscope), a full-resolution still into a new tele-expertise request, and the end.

import { useEffect, useRef, useState } from "preact/hooks";
import { client, hasRole } from "../api";
import { Role } from "../gen/telehealth/v1/access_pb";
import { SchedulingService, type Appointment } from "../gen/telehealth/v1/scheduling_pb";
import { ExpertiseService } from "../gen/telehealth/v1/expertise_pb";
import { ImageKind } from "../gen/telehealth/v1/images_pb";
import { Sex } from "../gen/telehealth/v1/common_pb";
import { sha256Hex, upload } from "../images";
import { navigate } from "../router";
import { patient as findPatient } from "../patients";
import { ErrorMessage, Page, Progress, newId } from "../ui";
import { Call } from "./call";

/** HD: sharp enough for a skin lesion's still, light enough to encode on an ordinary PC. */
const CAMERA: MediaTrackConstraints = { width: { ideal: 1280 }, height: { ideal: 720 } };

export function Consultation({ appointment: appointmentId }: { appointment: string }) {
  const doctor = hasRole(Role.DOCTOR);
  const [appointment, setAppointment] = useState<Appointment>();
  const [status, setStatus] = useState("Préparation de la caméra…");
  const [error, setError] = useState<unknown>();
  const [cameras, setCameras] = useState<MediaDeviceInfo[]>([]);
  const [microphones, setMicrophones] = useState<MediaDeviceInfo[]>([]);
  const [cameraId, setCameraId] = useState("");
  const [muted, setMuted] = useState(false);
  const [remotes, setRemotes] = useState<Map<string, MediaStream>>(new Map());
  const [still, setStill] = useState<{ sent: number; size: number; done?: string }>();
  const local = useRef<HTMLVideoElement>(null);
  const call = useRef<Call>();
  const stream = useRef<MediaStream>();

  useEffect(() => {
    let ended = false;
    (async () => {
      try {
        const media = await navigator.mediaDevices.getUserMedia({ video: CAMERA, audio: true });
        stream.current = media;
        if (local.current) local.current.srcObject = media;
        const devices = await navigator.mediaDevices.enumerateDevices();
        setCameras(devices.filter((d) => d.kind === "videoinput"));
        setMicrophones(devices.filter((d) => d.kind === "audioinput"));
        setCameraId(media.getVideoTracks()[0]?.getSettings().deviceId ?? "");
        const scheduling = client(SchedulingService);
        const started = doctor
          ? await scheduling.startTeleconsultation({ appointmentId })
          : await scheduling.checkIn({ appointmentId });
        setAppointment(started.appointment);
        if (ended) return;
        const running = new Call(started.roomId, media, {
          remote: (id, remote) => setRemotes((map) => new Map(map).set(id, remote)),
          left: (id) =>
            setRemotes((map) => {
              const next = new Map(map);
              next.delete(id);
              return next;
            }),
          status: setStatus,
        });
        call.current = running;
        // Exposed for the browser tests' statistics (`getStats`); nothing secret.
        (window as unknown as { telehealthCall?: Call }).telehealthCall = running;
        setStatus("Connexion à la salle…");
        await running.run();
      } catch (caught) {
        if (!ended) setError(caught);
      }
    })();
    return () => {
      ended = true;
      void call.current?.leave();
      stream.current?.getTracks().forEach((t) => t.stop());
    };
  }, [appointmentId, doctor]);

  async function switchCamera(deviceId: string) {
    setCameraId(deviceId);
    const next = await navigator.mediaDevices.getUserMedia({ video: { ...CAMERA, deviceId: { exact: deviceId } } });
    const track = next.getVideoTracks()[0]!;
    // The peers get the new camera first; the old one is released after.
    await call.current?.replaceVideo(track);
    const media = stream.current!;
    const old = media.getVideoTracks();
    media.addTrack(track);
    old.forEach((t) => {
      media.removeTrack(t);
      t.stop();
    });
    if (local.current) local.current.srcObject = media;
  }

  async function switchMicrophone(deviceId: string) {
    const next = await navigator.mediaDevices.getUserMedia({ audio: { deviceId: { exact: deviceId } } });
    const media = stream.current!;
    media.getAudioTracks().forEach((old) => {
      media.removeTrack(old);
      old.stop();
    });
    const track = next.getAudioTracks()[0]!;
    track.enabled = !muted;
    media.addTrack(track);
  }

  function toggleMute() {
    stream.current?.getAudioTracks().forEach((t) => (t.enabled = muted));
    setMuted(!muted);
  }

  /** A still at the camera's full resolution, into a new tele-expertise request (draft). */
  async function takeStill() {
    setError(undefined);
    try {
      const video = local.current!;
      const canvas = document.createElement("canvas");
      canvas.width = video.videoWidth;
      canvas.height = video.videoHeight;
      canvas.getContext("2d")!.drawImage(video, 0, 0);
      const blob = await new Promise<Blob>((resolve, reject) =>
        canvas.toBlob((b) => (b ? resolve(b) : reject(new Error("capture impossible"))), "image/jpeg", 0.95),
      );
      setStill({ sent: 0, size: blob.size });
      const patientId = appointment?.patient?.pseudonym ?? "";
      const record = await findPatient(patientId);
      const [target] = (await client(ExpertiseService).listTargets({ specialty: "dermatology" })).targets;
      const draft = await client(ExpertiseService).createDraft({
        idempotencyKey: newId(),
        content: {
          targetOrgId: target?.orgId ?? "",
          specialty: target?.specialty ?? "",
          patient: {
            patient: { pseudonym: patientId },
            ageYears: ageOf(record?.identity?.birthDate),
            sex: record?.identity?.sex ?? Sex.UNSPECIFIED,
          },
        },
      });
      const requestId = draft.request!.requestId;
      await upload(
        {
          target: { requestId },
          sessionId: newId(),
          file: blob,
          sha256: await sha256Hex(blob),
          kind: ImageKind.OTHER,
          caption: "Capture de téléconsultation",
          capturedAt: new Date(),
        },
        (sent) => setStill({ sent, size: blob.size }),
      );
      setStill({ sent: blob.size, size: blob.size, done: requestId });
    } catch (caught) {
      setError(caught);
    }
  }

  async function end() {
    await call.current?.leave();
    if (doctor) {
      await client(SchedulingService).finishAppointment({ appointmentId }).catch(setError);
      navigate(`/medecin/patient/${encodeURIComponent(appointment?.patient?.pseudonym ?? "")}`);
    } else navigate("/infirmiere");
  }

  return (
    <Page title="Téléconsultation">
      <p role="status" class="call-status">
        {status}
      </p>
      <ErrorMessage error={error} />
      <div class="videos">
        <figure>
          <video ref={local} autoplay muted playsInline aria-label="Votre caméra" />
          <figcaption>Vous</figcaption>
        </figure>
        {[...remotes.entries()].map(([id, remote]) => (
          <RemoteVideo id={id} stream={remote} />
        ))}
      </div>
      <div class="controls">
        <label for="camera">Caméra</label>
        <select id="camera" value={cameraId} onChange={(e) => void switchCamera((e.target as HTMLSelectElement).value).catch(setError)}>
          {cameras.map((c, i) => (
            <option value={c.deviceId}>{c.label || `Caméra ${i + 1}`}</option>
          ))}
        </select>
        <label for="microphone">Micro</label>
        <select id="microphone" onChange={(e) => void switchMicrophone((e.target as HTMLSelectElement).value).catch(setError)}>
          {microphones.map((m, i) => (
            <option value={m.deviceId}>{m.label || `Micro ${i + 1}`}</option>
          ))}
        </select>
        <button type="button" aria-pressed={muted} onClick={toggleMute}>
          {muted ? "Réactiver le micro" : "Couper le micro"}
        </button>
        {doctor && (
          <button type="button" onClick={() => void takeStill()}>
            Prendre une photo pour une télé-expertise
          </button>
        )}
        <button type="button" class="danger" onClick={() => void end()}>
          Terminer
        </button>
      </div>
      {still && (
        <div class="card" role="status">
          <Progress value={still.sent} max={still.size} label="Envoi de la photo" />
          {still.done && (
            <p>
              Photo ajoutée à une nouvelle demande de télé-expertise (brouillon) du dossier du patient.
            </p>
          )}
        </div>
      )}
    </Page>
  );
}

function RemoteVideo({ id, stream }: { id: string; stream: MediaStream }) {
  const element = useRef<HTMLVideoElement>(null);
  useEffect(() => {
    if (element.current) element.current.srcObject = stream;
  }, [stream]);
  return (
    <figure>
      <video ref={element} autoplay playsInline aria-label="Vidéo du participant" data-participant={id} />
      <figcaption>Participant</figcaption>
    </figure>
  );
}

function ageOf(birthDate: string | undefined): number {
  if (!birthDate) return 0;
  const born = new Date(`${birthDate}T00:00:00Z`);
  const now = new Date();
  let age = now.getUTCFullYear() - born.getUTCFullYear();
  if (now.getUTCMonth() < born.getUTCMonth() || (now.getUTCMonth() === born.getUTCMonth() && now.getUTCDate() < born.getUTCDate())) age -= 1;
  return Math.max(0, Math.min(130, age));
}
