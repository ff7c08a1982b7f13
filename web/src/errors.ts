// What a person reads when a call fails: one French sentence per gRPC status, and the server's
// own detail (already actionable, in English) kept for the technical line.

import { Code, ConnectError } from "@connectrpc/connect";

const MESSAGES: Record<Code, string> = {
  [Code.Canceled]: "L’opération a été annulée.",
  [Code.Unknown]: "Une erreur inattendue s’est produite. Réessayez ; si elle persiste, signalez-la.",
  [Code.InvalidArgument]: "Certaines informations saisies ne sont pas valables. Vérifiez le formulaire.",
  [Code.DeadlineExceeded]: "Le serveur a mis trop de temps à répondre. Réessayez dans un instant.",
  [Code.NotFound]: "Introuvable : l’élément n’existe pas ou vous n’y avez pas accès.",
  [Code.AlreadyExists]: "Cet élément existe déjà.",
  [Code.PermissionDenied]: "Vous n’avez pas accès à cette fonction avec votre rôle ou votre organisation.",
  [Code.ResourceExhausted]: "Trop de demandes ou fichier trop volumineux. Patientez un peu puis réessayez.",
  [Code.FailedPrecondition]: "L’opération n’est pas possible dans l’état actuel du dossier.",
  [Code.Aborted]: "Quelqu’un a modifié ce dossier en même temps que vous. Rechargez puis recommencez.",
  [Code.OutOfRange]: "Une valeur est hors des limites permises.",
  [Code.Unimplemented]: "Cette fonction n’est pas disponible sur ce serveur.",
  [Code.Internal]: "Erreur interne du serveur. L’équipe technique a été prévenue par les journaux.",
  [Code.Unavailable]: "Service momentanément indisponible ou connexion perdue. Réessayez dans un instant.",
  [Code.DataLoss]: "Des données n’ont pas pu être lues. Contactez le support.",
  [Code.Unauthenticated]: "Votre session a expiré. Reconnectez-vous.",
};

export interface Problem {
  code: Code;
  /** What to show. */
  message: string;
  /** The server's detail, for support. */
  detail: string;
}

export function problem(error: unknown): Problem {
  const connect = ConnectError.from(error);
  const offline = typeof navigator !== "undefined" && navigator.onLine === false;
  const message = offline
    ? "Pas de connexion réseau. Vos saisies sont gardées sur cet appareil."
    : MESSAGES[connect.code] ?? MESSAGES[Code.Unknown];
  return { code: connect.code, message, detail: connect.rawMessage };
}
