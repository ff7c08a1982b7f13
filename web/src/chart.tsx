// The healing chart: wound area (cm², left axis) and PUSH score (0–17, right axis) over time,
// drawn as SVG with a table of the same figures for screen readers and for exact values.

import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { TrendPoint } from "./gen/telehealth/v1/wound_pb";
import { formatDateTime, formatNumber, formatShortDay } from "./format";

const WIDTH = 640;
const HEIGHT = 240;
const PAD = { left: 48, right: 40, top: 16, bottom: 36 };
const PUSH_MAX = 17;

export function HealingChart({ points, title }: { points: TrendPoint[]; title: string }) {
  if (points.length === 0) return <p class="hint">Aucune mesure pour l’instant.</p>;
  const times = points.map((p) => timestampMs(p.assessedAt!));
  const first = Math.min(...times);
  const last = Math.max(...times);
  const span = Math.max(last - first, 24 * 3600 * 1000);
  const areaMax = Math.max(1, ...points.map((p) => p.areaCm2)) * 1.1;
  const x = (t: number) => PAD.left + ((t - first) / span) * (WIDTH - PAD.left - PAD.right);
  const yArea = (v: number) => HEIGHT - PAD.bottom - (v / areaMax) * (HEIGHT - PAD.top - PAD.bottom);
  const yPush = (v: number) => HEIGHT - PAD.bottom - (v / PUSH_MAX) * (HEIGHT - PAD.top - PAD.bottom);
  const areaPath = points.map((p, i) => `${i ? "L" : "M"}${x(times[i]!).toFixed(1)},${yArea(p.areaCm2).toFixed(1)}`).join(" ");
  const pushPath = points
    .map((p, i) => `${i ? "L" : "M"}${x(times[i]!).toFixed(1)},${yPush(p.push?.total ?? 0).toFixed(1)}`)
    .join(" ");
  const ticks = [0, 0.5, 1].map((f) => areaMax * f);
  return (
    <figure class="chart">
      <svg viewBox={`0 0 ${WIDTH} ${HEIGHT}`} role="img" aria-label={title}>
        <title>{title}</title>
        {ticks.map((v) => (
          <g>
            <line class="grid" x1={PAD.left} x2={WIDTH - PAD.right} y1={yArea(v)} y2={yArea(v)} />
            <text class="axis" x={PAD.left - 6} y={yArea(v) + 4} text-anchor="end">
              {formatNumber(v)}
            </text>
          </g>
        ))}
        {[0, 8.5, 17].map((v) => (
          <text class="axis push" x={WIDTH - PAD.right + 6} y={yPush(v) + 4}>
            {formatNumber(v, 0)}
          </text>
        ))}
        <text class="axis" x={PAD.left} y={HEIGHT - 8}>
          {formatShortDay(new Date(first))}
        </text>
        <text class="axis" x={WIDTH - PAD.right} y={HEIGHT - 8} text-anchor="end">
          {formatShortDay(new Date(last))}
        </text>
        <path class="line area" d={areaPath} />
        <path class="line push" d={pushPath} />
        {points.map((p, i) => (
          <circle class="dot area" cx={x(times[i]!)} cy={yArea(p.areaCm2)} r="4" />
        ))}
        {points.map((p, i) => (
          <rect class="dot push" x={x(times[i]!) - 3} y={yPush(p.push?.total ?? 0) - 3} width="6" height="6" />
        ))}
      </svg>
      <figcaption>
        <span class="key area">● surface (cm²)</span> <span class="key push">■ score PUSH (sur 17)</span>
      </figcaption>
      <details>
        <summary>Voir les valeurs</summary>
        <table>
          <thead>
            <tr>
              <th scope="col">Date</th>
              <th scope="col">Longueur × largeur (cm)</th>
              <th scope="col">Surface (cm²)</th>
              <th scope="col">PUSH</th>
            </tr>
          </thead>
          <tbody>
            {points.map((p) => (
              <tr>
                <td>{formatDateTime(p.assessedAt)}</td>
                <td>
                  {formatNumber(p.lengthCm)} × {formatNumber(p.widthCm)}
                </td>
                <td>{formatNumber(p.areaCm2, 2)}</td>
                <td>{p.push?.total ?? "—"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </details>
    </figure>
  );
}
