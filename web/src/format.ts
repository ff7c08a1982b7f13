// Dates in Europe/Paris in French format, the French names of the contract's codes, and the PUSH
// score as the wound service computes it (shown while the nurse types; the server's is recorded).

import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { Role } from "./gen/telehealth/v1/access_pb";
import { AppointmentStatus } from "./gen/telehealth/v1/scheduling_pb";
import { IdentityStatus } from "./gen/telehealth/v1/patients_pb";
import {
  AlertCause,
  Aetiology,
  ExudateAmount,
  HealingTrend,
  TissueType,
} from "./gen/telehealth/v1/wound_pb";
import { ExpertiseStatus, Recommendation, Urgency } from "./gen/telehealth/v1/expertise_pb";
import { BodyRegion, Laterality, type BodySite } from "./gen/telehealth/v1/common_pb";

export const TIME_ZONE = "Europe/Paris";

const dateTime = new Intl.DateTimeFormat("fr-FR", {
  timeZone: TIME_ZONE,
  dateStyle: "medium",
  timeStyle: "short",
});
const timeOnly = new Intl.DateTimeFormat("fr-FR", { timeZone: TIME_ZONE, timeStyle: "short" });
const dayLong = new Intl.DateTimeFormat("fr-FR", {
  timeZone: TIME_ZONE,
  weekday: "long",
  day: "numeric",
  month: "long",
  year: "numeric",
});
const dayShort = new Intl.DateTimeFormat("fr-FR", {
  timeZone: TIME_ZONE,
  weekday: "short",
  day: "numeric",
  month: "short",
});
const isoDay = new Intl.DateTimeFormat("en-CA", {
  timeZone: TIME_ZONE,
  year: "numeric",
  month: "2-digit",
  day: "2-digit",
});

function asDate(value: Timestamp | Date): Date {
  return value instanceof Date ? value : timestampDate(value);
}

/** « 3 déc. 2026, 14:30 » in Paris time. */
export function formatDateTime(value: Timestamp | Date | undefined): string {
  return value ? dateTime.format(asDate(value)) : "—";
}

/** « 14:30 » in Paris time. */
export function formatTime(value: Timestamp | Date | undefined): string {
  return value ? timeOnly.format(asDate(value)) : "—";
}

/** « jeudi 3 décembre 2026 ». */
export function formatDay(value: Date): string {
  return dayLong.format(value);
}

/** « jeu. 3 déc. ». */
export function formatShortDay(value: Date): string {
  return dayShort.format(value);
}

/** The Paris calendar day of an instant, `YYYY-MM-DD`. */
export function parisDay(value: Timestamp | Date): string {
  return isoDay.format(asDate(value));
}

/** The instant a Paris calendar day ends (midnight in Paris, whatever the offset that day). */
export function endOfParisDay(day: string): Date {
  // Paris is UTC+1 or UTC+2: the day ends between 22:00 and 23:00 UTC; find the quarter hour.
  let at = new Date(`${day}T21:45:00Z`).getTime();
  while (parisDay(new Date(at)) === day) at += 15 * 60 * 1000;
  return new Date(at);
}

/** A `YYYY-MM-DD` birth date as « 12/03/1948 ». */
export function formatBirthDate(value: string): string {
  const [year, month, day] = value.split("-");
  return year && month && day ? `${day}/${month}/${year}` : value;
}

/** Adds days to a `YYYY-MM-DD` calendar day (no time zone involved). */
export function addDays(day: string, days: number): string {
  const date = new Date(`${day}T12:00:00Z`);
  date.setUTCDate(date.getUTCDate() + days);
  return date.toISOString().slice(0, 10);
}

/** Monday of the week of a calendar day. */
export function mondayOf(day: string): string {
  const weekday = new Date(`${day}T12:00:00Z`).getUTCDay();
  return addDays(day, -((weekday + 6) % 7));
}

/** Noon (Paris or not, it is the same day) of a calendar day, for day names. */
export function noonOf(day: string): Date {
  return new Date(`${day}T12:00:00Z`);
}

export function formatNumber(value: number, digits = 1): string {
  return value.toLocaleString("fr-FR", { maximumFractionDigits: digits });
}

export const ROLE_NAMES: Partial<Record<Role, string>> = {
  [Role.DOCTOR]: "Médecin",
  [Role.NURSE]: "Infirmier·e",
  [Role.SPECIALIST]: "Spécialiste",
  [Role.COORDINATOR]: "Coordination",
  [Role.ADMIN]: "Administration",
  [Role.PATIENT]: "Patient",
};

export const APPOINTMENT_STATUS: Record<AppointmentStatus, string> = {
  [AppointmentStatus.UNSPECIFIED]: "—",
  [AppointmentStatus.BOOKED]: "Prévu",
  [AppointmentStatus.ARRIVED]: "En salle d’attente",
  [AppointmentStatus.IN_PROGRESS]: "En cours",
  [AppointmentStatus.FULFILLED]: "Terminé",
  [AppointmentStatus.CANCELLED]: "Annulé",
  [AppointmentStatus.NOSHOW]: "Absent",
};

export const IDENTITY_STATUS: Record<IdentityStatus, string> = {
  [IdentityStatus.UNSPECIFIED]: "—",
  [IdentityStatus.PROVISIONAL]: "Identité provisoire",
  [IdentityStatus.RECOVERED]: "Identité récupérée",
  [IdentityStatus.VALIDATED]: "Identité validée",
  [IdentityStatus.QUALIFIED]: "Identité qualifiée (INS)",
};

export const EXPERTISE_STATUS: Record<ExpertiseStatus, string> = {
  [ExpertiseStatus.UNSPECIFIED]: "—",
  [ExpertiseStatus.DRAFT]: "Brouillon",
  [ExpertiseStatus.SUBMITTED]: "Envoyée",
  [ExpertiseStatus.CLAIMED]: "Prise en charge",
  [ExpertiseStatus.ANSWERED]: "Répondue",
  [ExpertiseStatus.CLOSED]: "Clôturée",
  [ExpertiseStatus.WITHDRAWN]: "Retirée",
  [ExpertiseStatus.DECLINED]: "Refusée",
};

export const URGENCY: Record<Urgency, string> = {
  [Urgency.UNSPECIFIED]: "—",
  [Urgency.ROUTINE]: "Non urgente",
  [Urgency.URGENT]: "Urgente",
};

export const RECOMMENDATION: Record<Recommendation, string> = {
  [Recommendation.UNSPECIFIED]: "—",
  [Recommendation.REASSURE]: "Rassurer",
  [Recommendation.MONITOR]: "Surveiller",
  [Recommendation.TREAT]: "Traiter",
  [Recommendation.EXCISE]: "Exérèse",
  [Recommendation.SEE_IN_PERSON_URGENTLY]: "Consultation en présentiel urgente",
  [Recommendation.SEE_IN_PERSON]: "Consultation en présentiel",
  [Recommendation.OTHER]: "Autre",
};

export const TISSUE: Record<TissueType, string> = {
  [TissueType.UNSPECIFIED]: "—",
  [TissueType.CLOSED]: "Fermée (0)",
  [TissueType.EPITHELIAL]: "Épithélialisation (1)",
  [TissueType.GRANULATION]: "Bourgeonnement (2)",
  [TissueType.SLOUGH]: "Fibrine (3)",
  [TissueType.NECROTIC]: "Nécrose (4)",
};

export const EXUDATE: Record<ExudateAmount, string> = {
  [ExudateAmount.UNSPECIFIED]: "—",
  [ExudateAmount.NONE]: "Aucun (0)",
  [ExudateAmount.LIGHT]: "Faible (1)",
  [ExudateAmount.MODERATE]: "Modéré (2)",
  [ExudateAmount.HEAVY]: "Abondant (3)",
};

export const AETIOLOGY: Record<Aetiology, string> = {
  [Aetiology.UNSPECIFIED]: "—",
  [Aetiology.PRESSURE_ULCER]: "Escarre",
  [Aetiology.VENOUS_LEG_ULCER]: "Ulcère veineux",
  [Aetiology.ARTERIAL_LEG_ULCER]: "Ulcère artériel",
  [Aetiology.MIXED_LEG_ULCER]: "Ulcère mixte",
  [Aetiology.DIABETIC_FOOT_ULCER]: "Plaie du pied diabétique",
  [Aetiology.SURGICAL]: "Plaie chirurgicale",
  [Aetiology.BURN]: "Brûlure",
  [Aetiology.OTHER]: "Autre",
};

export const ALERT_CAUSE: Record<AlertCause, string> = {
  [AlertCause.UNSPECIFIED]: "—",
  [AlertCause.AREA_INCREASE]: "Surface en augmentation",
  [AlertCause.PUSH_INCREASE]: "Score PUSH en hausse",
  [AlertCause.INFECTION_SIGNS]: "Signes d’infection",
  [AlertCause.INSUFFICIENT_REDUCTION]: "Réduction insuffisante sur 4 semaines",
  [AlertCause.ASSESSMENT_OVERDUE]: "Évaluation en retard",
};

export const HEALING_TREND: Record<HealingTrend, string> = {
  [HealingTrend.UNSPECIFIED]: "—",
  [HealingTrend.INSUFFICIENT_DATA]: "Pas assez de mesures",
  [HealingTrend.IMPROVING]: "En amélioration",
  [HealingTrend.STABLE]: "Stable",
  [HealingTrend.DETERIORATING]: "En aggravation",
  [HealingTrend.HEALED]: "Cicatrisée",
};

const REGION: Partial<Record<BodyRegion, string>> = {
  [BodyRegion.SCALP]: "cuir chevelu",
  [BodyRegion.FACE]: "visage",
  [BodyRegion.NECK]: "cou",
  [BodyRegion.CHEST]: "thorax",
  [BodyRegion.ABDOMEN]: "abdomen",
  [BodyRegion.UPPER_BACK]: "haut du dos",
  [BodyRegion.LOWER_BACK]: "bas du dos",
  [BodyRegion.SACRUM]: "sacrum",
  [BodyRegion.BUTTOCK]: "fesse",
  [BodyRegion.HIP]: "hanche",
  [BodyRegion.FOREARM]: "avant-bras",
  [BodyRegion.HAND]: "main",
  [BodyRegion.THIGH]: "cuisse",
  [BodyRegion.KNEE]: "genou",
  [BodyRegion.LOWER_LEG]: "jambe",
  [BodyRegion.ANKLE]: "cheville",
  [BodyRegion.HEEL]: "talon",
  [BodyRegion.FOOT_DORSUM]: "dos du pied",
  [BodyRegion.FOOT_SOLE]: "plante du pied",
  [BodyRegion.TOE]: "orteil",
};

const SIDE: Partial<Record<Laterality, string>> = {
  [Laterality.LEFT]: "gauche",
  [Laterality.RIGHT]: "droit(e)",
  [Laterality.BILATERAL]: "bilatéral",
};

export function formatBodySite(site: BodySite | undefined): string {
  if (!site) return "—";
  const region = REGION[site.region] ?? "autre localisation";
  const side = SIDE[site.laterality];
  return [region, side, site.description].filter(Boolean).join(" ");
}

/** PUSH Tool 3.0 area sub-score of L × W in cm (rounded to the millimetre, as the server does). */
export function pushAreaSubscore(lengthCm: number, widthCm: number): number {
  const mm2 = Math.round(lengthCm * 10) * Math.round(widthCm * 10);
  if (mm2 <= 0) return 0;
  const bands: [number, number][] = [
    [29, 1], [60, 2], [100, 3], [200, 4], [300, 5], [400, 6], [800, 7], [1200, 8], [2400, 9],
  ];
  return bands.find(([largest]) => mm2 <= largest)?.[1] ?? 10;
}

/** The PUSH total, or undefined while something is missing. */
export function pushScore(
  lengthCm: number,
  widthCm: number,
  tissue: TissueType,
  exudate: ExudateAmount,
): number | undefined {
  if (!(lengthCm >= 0 && widthCm >= 0) || !tissue || !exudate) return undefined;
  return pushAreaSubscore(lengthCm, widthCm) + (exudate - 1) + (tissue - 1);
}
