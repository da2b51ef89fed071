// The console's charts, drawn with uPlot: bars per category (stages, groups, hours of a
// day) and series over days (stacked bars, with lines on a second scale for
// shares). A chart is a figure: its title, the drawing as one image with a label saying
// what it shows, a legend in text, and the same figures as a table under "Show the
// figures", so that whoever does not see the drawing (a screen reader, the keyboard
// alone) gets the numbers. A chart takes its container's width and redraws when it
// changes.
import uPlot from "uplot";
import { count, html, useEffect, useRef } from "console/lib.js";

const HEIGHT = 240;
const NARROWEST = 280;
/** Series colours in the order series are given: each at least 3:1 against the white
 * ground (WCAG's contrast for the parts of a graphic), and told apart from its
 * neighbours in a stack. */
export const COLOURS = ["#1f4e79", "#b45309", "#2e7d32", "#6a3d9a", "#5f6b7a"];
const DAY_S = 86_400;
/** Ticks of an axis of counts: whole numbers only (there is no half a visitor). */
const WHOLE_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6];

const dayFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeZone: "UTC" });

/** A calendar day ("2026-12-01", or a Date at its UTC midnight), as people read it. */
export function dayLabel(day) {
  return dayFormat.format(typeof day === "string" ? new Date(`${day}T00:00:00Z`) : day);
}

/** One uPlot drawn into `box` from what `build(width)` returns ({options, data}),
 * rebuilt when `key` changes and resized with its container. */
function useUplot(box, build, key) {
  useEffect(() => {
    const element = box.current;
    if (!element) return undefined;
    const width = () => Math.max(element.clientWidth, NARROWEST);
    const { options, data } = build();
    const chart = new uPlot({ ...options, width: width(), height: HEIGHT }, data, element);
    let last = width();
    const resized = new ResizeObserver(() => {
      const now = width();
      if (now !== last) {
        last = now;
        chart.setSize({ width: now, height: HEIGHT });
      }
    });
    resized.observe(element);
    return () => { resized.disconnect(); chart.destroy(); };
  }, [key]);
}

/** Bottom-up sums of stacked series: what each series' bar reaches to. */
function stackedTops(series) {
  const tops = [];
  series.forEach((one, index) => {
    tops.push(one.values.map((value, at) => (value ?? 0) + (index ? tops[index - 1][at] : 0)));
  });
  return tops;
}

/** Bars of `series` stacked (one series is a stack of one): uPlot draws series in order,
 * later over earlier, so the stack is drawn top first and each lower bar covers the part
 * of the one above that is not its own. */
function stackedBars(series, barSize) {
  const bars = uPlot.paths.bars({ size: barSize, align: 0 });
  const drawn = series.map((one) => ({
    label: one.label, stroke: one.colour, fill: one.colour, width: 0,
    paths: bars, points: { show: false },
  }));
  return { drawn: [...drawn].reverse(), data: [...stackedTops(series)].reverse() };
}

function withColours(series) {
  return series.map((one, index) => ({ ...one, colour: one.colour || COLOURS[index % COLOURS.length] }));
}

function largest(arrays) {
  return Math.max(1, ...arrays.flat().filter((value) => value !== null && value !== undefined));
}

/** "Visitors: 3 on Mon, 4 on Tue": the figures in words when they are few, else their range. */
function describe(title, labels, series) {
  const few = labels.length <= 12;
  const parts = series.map((one) => {
    const format = one.format || count;
    if (few) return `${one.label}: ${labels.map((label, at) => `${format(one.values[at])} ${label}`).join(", ")}`;
    const known = one.values.filter((value) => value !== null && value !== undefined);
    if (!known.length) return `${one.label}: no figures`;
    return `${one.label} from ${format(Math.min(...known))} to ${format(Math.max(...known))}`;
  });
  const span = labels.length ? ` (${labels[0]} to ${labels[labels.length - 1]})` : "";
  return `${title}${few ? "" : span}. ${parts.join("; ")}.`;
}

function Legend({ series }) {
  if (series.length < 2) return null;
  return html`<ul class="chart-legend">${series.map((one) => html`
    <li><span class=${`chart-swatch${one.line ? " line" : ""}`} style=${`background: ${one.colour}`}></span>${one.label}</li>`)}
  </ul>`;
}

/** The chart's figures, a row per category or day (headed by `heads`, markup, when given,
 * else by its label), a column per series. */
function FiguresTable({ title, heading, labels, heads, series }) {
  return html`<details class="chart-figures">
    <summary>Show the figures<span class="visually-hidden"> of ${title}</span></summary>
    <div class="table-wrap"><table>
      <caption>${title}</caption>
      <thead><tr><th scope="col">${heading}</th>
        ${series.map((one) => html`<th scope="col" class="number">${one.label}</th>`)}</tr></thead>
      <tbody>${labels.map((label, at) => html`<tr key=${label}><th scope="row">${heads ? heads[at] : label}</th>
        ${series.map((one) => html`<td class="number">${(one.format || count)(one.values[at])}</td>`)}</tr>`)}</tbody>
    </table></div>
  </details>`;
}

function Figure({ title, hint, labels, heads, heading, series, box }) {
  return html`<figure class="chart-figure">
    <figcaption>${title}${hint && html`<span class="hint">${hint}</span>`}</figcaption>
    <div class="chart" ref=${box} role="img" aria-label=${describe(title, labels, series)}></div>
    <${Legend} series=${series} />
    <${FiguresTable} title=${title} heading=${heading} labels=${labels} heads=${heads} series=${series} />
  </figure>`;
}

/**
 * Bars per category: `labels` along the bottom, a bar for each; several series are
 * stacked, as the parts of a whole.
 * series: [{label, values, format?, colour?}]; `format` writes a value (count by default).
 */
export function BarChart({ title, hint, labels, series, heading = "" }) {
  const box = useRef(null);
  const coloured = withColours(series);
  const key = JSON.stringify([title, labels, series.map((one) => one.values)]);
  useUplot(box, () => {
    const xs = labels.map((_, index) => index);
    const { drawn, data } = stackedBars(coloured, [0.6, 80]);
    const format = coloured[0].format || count;
    const steps = coloured[0].format ? {} : { incrs: WHOLE_STEPS };
    return {
      data: [xs, ...data],
      options: {
        legend: { show: false }, cursor: { show: false }, select: { show: false },
        scales: {
          x: { time: false, range: [-0.5, labels.length - 0.5] },
          y: { range: () => [0, largest(data) * 1.1] },
        },
        axes: [
          { splits: () => xs, values: (_, splits) => splits.map((index) => labels[index] ?? ""), grid: { show: false } },
          { values: (_, splits) => splits.map((value) => format(value)), size: 60, ...steps },
        ],
        series: [{}, ...drawn],
      },
    };
  }, key);
  return html`<${Figure} title=${title} hint=${hint} labels=${labels} heading=${heading}
    series=${coloured} box=${box} />`;
}

/**
 * Series over days: `days` are ISO dates ("2026-12-01", UTC days); `bars` are drawn as
 * stacked bars, `lines` as lines on a second scale from 0 to 1 (shares,
 * read on the right-hand axis as percentages).
 * bars, lines: [{label, values, format?, colour?}].
 */
export function DayChart({ title, hint, days, bars, lines = [], lineFormat }) {
  const box = useRef(null);
  const coloured = withColours([...bars, ...lines]);
  const barsColoured = coloured.slice(0, bars.length);
  const linesColoured = coloured.slice(bars.length).map((one) => ({ ...one, line: true }));
  const key = JSON.stringify([title, days, coloured.map((one) => one.values)]);
  useUplot(box, () => {
    const xs = days.map((day) => Date.parse(`${day}T00:00:00Z`) / 1000);
    const { drawn, data } = stackedBars(barsColoured, [0.7, 60]);
    const lineSeries = linesColoured.map((one) => ({
      label: one.label, stroke: one.colour, width: 2, scale: "share", spanGaps: false,
      points: { show: true, size: 6, fill: one.colour },
    }));
    return {
      data: [xs, ...data, ...linesColoured.map((one) => one.values)],
      options: {
        tzDate: (seconds) => uPlot.tzDate(new Date(seconds * 1000), "Etc/UTC"),
        legend: { show: false }, cursor: { show: false }, select: { show: false },
        scales: {
          x: { range: (_, min, max) => [min - DAY_S / 2, max + DAY_S / 2] },
          y: { range: () => [0, largest(data) * 1.1] },
          share: { range: [0, 1] },
        },
        axes: [
          { grid: { show: false } },
          { values: (_, splits) => splits.map((value) => count(value)), size: 50, incrs: WHOLE_STEPS },
          ...(lines.length ? [{
            scale: "share", side: 1, grid: { show: false }, size: 50,
            values: (_, splits) => splits.map((value) => (lineFormat ? lineFormat(value) : value)),
          }] : []),
        ],
        series: [{}, ...drawn, ...lineSeries],
      },
    };
  }, key);
  return html`<${Figure} title=${title} hint=${hint} labels=${days.map(dayLabel)} heading="Day"
    heads=${days.map((day) => html`<time datetime=${day}>${dayLabel(day)}</time>`)} series=${[...barsColoured, ...linesColoured]} box=${box} />`;
}

const timeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "short", timeStyle: "short" });

/**
 * Series over time (lines): `times` are ISO instants, one per point; a missing value
 * (null) leaves a gap rather than a line across it. series: [{label, values, format?,
 * colour?}]; the left axis reads in the first series' format.
 */
export function TimeChart({ title, hint, times, series, heading = "Time" }) {
  const box = useRef(null);
  const coloured = withColours(series);
  const key = JSON.stringify([title, times, coloured.map((one) => one.values)]);
  useUplot(box, () => {
    const xs = times.map((time) => Date.parse(time) / 1000);
    const values = coloured.map((one) => one.values);
    const format = coloured[0]?.format || count;
    return {
      data: [xs, ...values],
      options: {
        legend: { show: false }, cursor: { show: false }, select: { show: false },
        scales: { y: { range: () => [0, largest(values) * 1.1] } },
        axes: [
          { grid: { show: false } },
          { values: (_, splits) => splits.map((value) => format(value)), size: 60 },
        ],
        series: [{}, ...coloured.map((one) => ({
          label: one.label, stroke: one.colour, width: 2, spanGaps: false,
          points: { show: xs.length <= 48, size: 5, fill: one.colour },
        }))],
      },
    };
  }, key);
  const labels = times.map((time) => timeFormat.format(new Date(time)));
  return html`<${Figure} title=${title} hint=${hint} labels=${labels} heading=${heading}
    heads=${times.map((time, at) => html`<time datetime=${time}>${labels[at]}</time>`)}
    series=${coloured} box=${box} />`;
}
