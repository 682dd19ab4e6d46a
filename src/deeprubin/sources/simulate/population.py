"""Population-level settings shared by the class models (``source.population``)."""
from __future__ import annotations

from dataclasses import dataclass, field

from deeprubin.sources.simulate.cadence import SimulationConfigError
from deeprubin.sources.simulate.physics import redshift_at_distance_modulus

#: How far (mag) beyond the median depth a class's redshift range reaches: the
#: deepest epochs are ~3 sigma (of ``lim_mag_scatter``) deeper than the median, and
#: a source there must be allowed to exist so the selection, not the sampler,
#: decides what is seen (Malmquist bias emerges from the selection).
DEPTH_MARGIN_SIGMA = 3.0

#: Sources whose brightest noise-free magnitude is this much fainter than the deepest
#: epochs have SNR <= 5 * 10**(-0.2) ~ 3.2 at best and (practically) never reach the
#: detection threshold several times: the class models skip their light-curve shapes
#: and the survey drops them before scheduling, which only saves time.
HOPELESS_MARGIN_MAG = 0.5

#: Margin (mag) between a flux limit on the observed g/r peak (``max_peak_mag``) and the
#: redshift cap of a class: the classes bound their brightest member in one band (SN Ia:
#: rest-frame B; Villar SNe: r), and the observed g/r peak can be up to ~0.5 mag brighter
#: (colour, K-correction); 1 mag keeps every source that can pass the limit.
PEAK_LIMIT_MARGIN_MAG = 1.0

#: BTS flux limit: the ZTF Bright Transient Survey classifies spectroscopically every
#: transient with a peak alert magnitude <= 18.5 (Fremling et al. 2020, ApJ 895, 32;
#: Perley et al. 2020, ApJ 904, 35), the origin of most labelled ZTF supernovae.
SPECTROSCOPIC_PEAK_MAG = 18.5

#: Default truncation of the period distributions, days.
DEFAULT_PERIOD_RANGES = {"Cepheid": (1.0, 60.0), "RRLyrae": (0.2, 1.0), "EB": (0.2, 50.0)}


@dataclass(frozen=True)
class PopulationConfig:
    """Validated ``source.population`` settings.

    Attributes
    ----------
    min_detections : int
        Malmquist selection: a source is kept only if its (noisy) light curve has
        at least this many epochs with SNR >= 5, as in a real alert-based sample.
    redshift_min, redshift_max : float
        Bounds of every extragalactic population; each class additionally stops
        where its brightest member would be fainter than the deepest epochs.
    mw_ebv_mean : float
        Mean Milky Way E(B-V) (mag) of the sight lines (exponential distribution).
    period_ranges : dict of str -> (float, float)
        Truncation (days) of the period distributions of periodic classes.
    deepest_mag : float
        ``lim_mag_median + DEPTH_MARGIN_SIGMA * lim_mag_scatter`` of the survey.
    max_peak_mag : float or None
        Optional flux limit on the noise-free peak magnitude (brightest of g and
        r) of classes that have one (transients, pulsators, binaries): e.g. a
        Bright-Transient-Survey-like sample. None = no such limit.
    spectroscopic_fraction : float
        Fraction, in [0, 1], of every transient class's sources drawn from the
        spectroscopically classified population (noise-free peak <=
        ``spectroscopic_peak_mag``) instead of the photometric, depth-limited one.
        Labels of real survey transients come from spectra, and spectroscopic
        follow-up is far shallower than the imaging: a labelled training set (and
        the real samples a classifier is checked on, e.g. the BTS) is dominated by
        nearby, bright, long-observed events (see
        :mod:`deeprubin.sources.simulate.survey`). 0 = purely photometric selection.
    spectroscopic_peak_mag : float
        Flux limit of that population, mag (default the BTS limit,
        :data:`SPECTROSCOPIC_PEAK_MAG`).
    snia_dust_tau : float or None
        SN Ia colours: None = the Scolnic & Kessler (2016) parent population; a
        number = intrinsic colour plus exponential host dust of that mean E(B-V),
        mag (Brout & Scolnic 2021; see :mod:`deeprubin.sources.simulate.snia`).
    """

    min_detections: int = 3
    redshift_min: float = 0.002
    redshift_max: float = 3.5
    mw_ebv_mean: float = 0.04
    period_ranges: dict = field(default_factory=lambda: dict(DEFAULT_PERIOD_RANGES))
    deepest_mag: float = 21.4
    max_peak_mag: float | None = None
    spectroscopic_fraction: float = 0.0
    spectroscopic_peak_mag: float = SPECTROSCOPIC_PEAK_MAG
    snia_dust_tau: float | None = None

    @property
    def limiting_mag(self) -> float:
        """Faintest peak magnitude (mag) a class's brightest member may have to be selectable:
        the deepest epochs, or a flux limit ``max_peak_mag`` (plus :data:`PEAK_LIMIT_MARGIN_MAG`)
        when that is brighter. Bounds the redshift range, so a bright flux-limited sample is not
        drawn out to the survey's full depth and then almost entirely rejected."""
        if self.max_peak_mag is None:
            return self.deepest_mag
        return min(self.deepest_mag, self.max_peak_mag + PEAK_LIMIT_MARGIN_MAG)

    def redshift_max_for(self, brightest_abs_mag: float, label: str = "") -> float:
        """Largest redshift at which a source of ``brightest_abs_mag`` can still reach
        :attr:`limiting_mag` (the deepest epochs or the flux limit), capped at ``redshift_max``.

        Raises
        ------
        SimulationConfigError
            When that redshift is below ``redshift_min``: even the brightest member
            of the class would be fainter than the survey's limiting magnitude.
        """
        z = float(redshift_at_distance_modulus(self.limiting_mag - brightest_abs_mag))
        if z <= self.redshift_min:
            if self.limiting_mag < self.deepest_mag:
                raise SimulationConfigError(
                    f"population.max_peak_mag: flux limit {self.max_peak_mag:.2f} (+ {PEAK_LIMIT_MARGIN_MAG:g} mag "
                    f"margin) is brighter than the brightest {label or 'source'} (M = {brightest_abs_mag:.2f}) "
                    f"at population.redshift_min = {self.redshift_min}")
            raise SimulationConfigError(
                f"survey.lim_mag_median: limiting magnitude {self.deepest_mag:.2f} (median + "
                f"{DEPTH_MARGIN_SIGMA:g} sigma) is brighter than the brightest {label or 'source'} "
                f"(M = {brightest_abs_mag:.2f}) at population.redshift_min = {self.redshift_min}")
        return min(z, self.redshift_max)

    @property
    def hopeless_mag(self) -> float:
        """Peak magnitude beyond which a source cannot be selected (see :data:`HOPELESS_MARGIN_MAG`
        and :attr:`max_peak_mag`)."""
        limit = self.deepest_mag + HOPELESS_MARGIN_MAG
        return limit if self.max_peak_mag is None else min(limit, self.max_peak_mag)

    def period_range(self, label: str) -> tuple[float, float]:
        """Period truncation (days) of class ``label``."""
        return tuple(self.period_ranges.get(label, DEFAULT_PERIOD_RANGES[label]))
