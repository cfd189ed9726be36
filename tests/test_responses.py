import bz2
import gzip
import hashlib
import logging
import os
import re
import shutil
import time
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
from astropy.io import fits

from xrmod.errors import InputError, ResponseError
from xrmod.responses import (
    ARF,
    PHA,
    RMF,
    check_background,
    check_compatible,
    file_sha256,
    fits_access,
    read_arf,
    read_pha,
    read_rmf,
    write_arf,
    write_rmf,
)

PN_ARF = Path(str(files("xrmod") / "data" / "pn.arf"))
PN_RMF = Path(str(files("xrmod") / "data" / "pn.rmf"))
PN_PHA = Path(__file__).parent / "data" / "pn_fake.pha"


@pytest.fixture(scope="module")
def pn_arf():
    return read_arf(PN_ARF)


@pytest.fixture(scope="module")
def pn_rmf():
    return read_rmf(PN_RMF)


def _dense_rows_by_loop(path, rows):
    """Rows of the matrix rebuilt with a plain loop over the raw FITS columns."""
    with fits.open(path) as hdul:
        hdu = next(h for h in hdul if h.name in ("MATRIX", "SPECRESP MATRIX"))
        data = hdu.data
        k = [n.upper() for n in hdu.columns.names].index("F_CHAN")
        first = hdu.header.get(f"TLMIN{k + 1}", 1)
        n_channel = hdu.header["DETCHANS"]
        out = np.zeros((len(rows), n_channel))
        for r, i in enumerate(rows):
            f_chan = np.atleast_1d(data["F_CHAN"][i])
            n_chan = np.atleast_1d(data["N_CHAN"][i])
            values = np.atleast_1d(data["MATRIX"][i])
            pos = 0
            for g in range(int(data["N_GRP"][i])):
                for c in range(int(n_chan[g])):
                    out[r, int(f_chan[g]) - first + c] += values[pos]
                    pos += 1
    return out


# --------------------------------------------------------------------------- bundled files


def test_bundled_arf(pn_arf):
    assert pn_arf.n_energy == 2067
    assert pn_arf.energ_lo[0] == pytest.approx(0.05)
    assert pn_arf.energ_hi[-1] == pytest.approx(16.005, abs=1e-5)
    assert pn_arf.specresp.max() == pytest.approx(1331, rel=1e-3)
    assert pn_arf.specresp.dtype == np.float64
    assert (pn_arf.telescope, pn_arf.instrument) == ("XMM", "EPN")
    assert pn_arf.exposure is None
    assert pn_arf.path == str(PN_ARF)
    np.testing.assert_allclose(pn_arf.energies, 0.5 * (pn_arf.energ_lo + pn_arf.energ_hi))
    with pytest.raises(ValueError, match="read-only"):
        pn_arf.specresp[0] = 1.0


def test_bundled_rmf(pn_rmf, pn_arf):
    m = pn_rmf.matrix
    assert isinstance(m, scipy.sparse.csr_array)
    assert m.shape == (2067, 4039) == (pn_rmf.n_energy, pn_rmf.n_channel)
    assert m.dtype == np.float64 and m.has_canonical_format
    assert 0.9e6 < m.nnz < 1.0e6
    assert pn_rmf.first_channel == 0
    np.testing.assert_array_equal(pn_rmf.channels, np.arange(4039))
    assert pn_rmf.e_min.shape == pn_rmf.e_max.shape == (4039,)
    assert np.all(m.data >= 0)
    row_sums = m.sum(axis=1)
    assert np.all(row_sums <= 1 + 1e-5)
    assert row_sums.max() > 0.99
    assert (pn_rmf.telescope, pn_rmf.instrument) == ("XMM", "EPN")
    check_compatible(pn_arf, pn_rmf)
    with pytest.raises(ValueError, match="read-only"):
        m.data[0] = 1.0


def test_bundled_rmf_rows_match_plain_loop(pn_rmf):
    with fits.open(PN_RMF) as hdul:
        n_grp = np.asarray(hdul["MATRIX"].data["N_GRP"])
    rows = sorted({0, 1, 700, 1500, 2066, *np.flatnonzero(n_grp == n_grp.max())[:3].tolist()})
    assert n_grp.max() > 1  # the file has multi-group rows: they are among those checked
    expected = _dense_rows_by_loop(PN_RMF, rows)
    np.testing.assert_array_equal(pn_rmf.matrix[rows].toarray(), expected)


def test_bundled_rmf_fast_and_public_heap_paths_agree(pn_rmf, monkeypatch):
    monkeypatch.setattr(fits_access, "_vla_from_heap", lambda *args: None)
    slow = read_rmf(PN_RMF)
    assert (slow.matrix != pn_rmf.matrix).nnz == 0
    np.testing.assert_array_equal(slow.matrix.indptr, pn_rmf.matrix.indptr)


def test_bundled_rmf_load_time():
    best = min(_timed(read_rmf, PN_RMF) for _ in range(3))
    assert best < 1.0, f"reading the bundled RMF took {best:.3f} s"


def _timed(func, *args):
    t0 = time.perf_counter()
    func(*args)
    return time.perf_counter() - t0


def test_bundled_pha(pn_rmf):
    pha = read_pha(PN_PHA)
    assert pha.exposure == 25000.0
    assert pha.counts.dtype == np.float64
    assert pha.counts.sum() == pytest.approx(9.9e6, rel=0.01)
    assert pha.n_channel == pn_rmf.n_channel == 4039
    np.testing.assert_array_equal(pha.channels, pn_rmf.channels)
    assert pha.backscal == 1.0 and pha.areascal == 1.0 and pha.poisserr is True
    check_background(pha, pn_rmf)


def test_files_are_closed_after_reading(pn_rmf):
    read_rmf(PN_RMF)
    read_arf(PN_ARF)
    read_pha(PN_PHA)
    fd_dir = Path("/proc/self/fd")
    if not fd_dir.exists():
        pytest.skip("needs /proc")
    targets = set()
    for fd in fd_dir.iterdir():
        try:
            targets.add(os.readlink(fd))
        except OSError:
            continue
    assert not {str(PN_RMF.resolve()), str(PN_ARF.resolve()), str(PN_PHA.resolve())} & targets


def test_file_sha256(tmp_path):
    assert file_sha256(PN_ARF) == hashlib.sha256(PN_ARF.read_bytes()).hexdigest()
    with pytest.raises(ResponseError, match=r"nope\.rmf: cannot read file"):
        file_sha256(tmp_path / "nope.rmf")


def test_gzipped_rmf_reads_like_plain(tmp_path, pn_rmf):
    gz = tmp_path / "pn.rmf.gz"
    gz.write_bytes(gzip.compress(PN_RMF.read_bytes(), compresslevel=1))
    rmf = read_rmf(gz)
    assert (rmf.matrix != pn_rmf.matrix).nnz == 0


# --------------------------------------------------------------------------- synthetic layouts


@pytest.mark.parametrize("first_channel", [0, 1])
@pytest.mark.parametrize("chan_layout", ["vla", "fixed"])
@pytest.mark.parametrize("matrix_layout", ["vla", "fixed"])
@pytest.mark.parametrize("extname", ["MATRIX", "SPECRESP MATRIX"])
def test_synthetic_layouts(make_rmf, synthetic, first_channel, chan_layout, matrix_layout, extname):
    path = make_rmf(
        synthetic,
        first_channel=first_channel,
        chan_layout=chan_layout,
        matrix_layout=matrix_layout,
        extname=extname,
    )
    rmf = read_rmf(path)
    assert rmf.first_channel == first_channel
    np.testing.assert_array_equal(rmf.channels, first_channel + np.arange(12))
    np.testing.assert_array_equal(rmf.matrix.toarray(), synthetic.dense)
    assert rmf.matrix.has_canonical_format
    assert rmf.energ_lo[0] == 0.0  # ENERG_LO = 0 is kept
    np.testing.assert_array_equal(rmf.energ_hi, synthetic.energ_hi)
    np.testing.assert_allclose(rmf.e_min, synthetic.e_min, rtol=1e-7)
    # independent check of the same file with the plain loop
    np.testing.assert_array_equal(_dense_rows_by_loop(path, range(9)), synthetic.dense)


@pytest.mark.parametrize("first_channel", [0, 1])
@pytest.mark.parametrize("matrix_layout", ["vla", "fixed"])
def test_scalar_group_columns(make_rmf, synthetic_single, first_channel, matrix_layout):
    path = make_rmf(
        synthetic_single,
        first_channel=first_channel,
        chan_layout="scalar",
        matrix_layout=matrix_layout,
    )
    rmf = read_rmf(path)
    np.testing.assert_array_equal(rmf.matrix.toarray(), synthetic_single.dense)
    assert rmf.channels[0] == first_channel


def test_float32_columns(make_rmf, synthetic):
    rmf = read_rmf(make_rmf(synthetic, float32=True))
    assert rmf.matrix.dtype == np.float64
    np.testing.assert_allclose(rmf.matrix.toarray(), synthetic.dense, rtol=1e-7)


def test_vla_element_types(make_rmf, synthetic):
    # 16-bit F_CHAN/N_CHAN in 64-bit descriptors (Q), float32 matrix values
    def edit(cols):
        for name in ("F_CHAN", "N_CHAN"):
            arrays = [np.asarray(a, dtype=np.int16) for a in cols[name].array]
            cols[name] = fits.Column(name=name, format="QI()", array=arrays)
        values = [np.asarray(a, dtype=np.float32) for a in cols["MATRIX"].array]
        cols["MATRIX"] = fits.Column(name="MATRIX", format="QE()", array=values)

    rmf = read_rmf(make_rmf(synthetic, edit=edit))
    np.testing.assert_allclose(rmf.matrix.toarray(), synthetic.dense, rtol=1e-7)


def test_tlmin_absent_defaults_to_one(make_rmf, synthetic):
    rmf = read_rmf(make_rmf(synthetic, first_channel=1, tlmin=False))
    assert rmf.first_channel == 1
    np.testing.assert_array_equal(rmf.matrix.toarray(), synthetic.dense)


def test_tlmin_absent_with_zero_based_channels_is_an_error(make_rmf, synthetic):
    path = make_rmf(synthetic, first_channel=0, tlmin=False)
    with pytest.raises(
        ResponseError,
        match=r"extension MATRIX: F_CHAN = 0 in row 1 is below the first channel 1 "
        r"\(no TLMIN: OGIP default\)",
    ):
        read_rmf(path)


def test_matrix_found_by_hduclas2(make_rmf, synthetic):
    rmf = read_rmf(make_rmf(synthetic, extname="RESPONSE"))
    np.testing.assert_array_equal(rmf.matrix.toarray(), synthetic.dense)


def test_detchans_absent(make_rmf, synthetic):
    rmf = read_rmf(make_rmf(synthetic, detchans=None))
    assert rmf.n_channel == 12


# --------------------------------------------------------------------------- band


@pytest.mark.parametrize("band", [(0.5, 10.0), (0.3, 2.0), (2.0, 2.05), (15.0, 20.0), (20.0, 30.0)])
def test_band_channels(pn_rmf, band):
    lo, hi = band
    expected = (pn_rmf.e_max > lo) & (pn_rmf.e_min < hi)
    mask = pn_rmf.band_channels(lo, hi)
    assert mask.dtype == bool and mask.shape == (4039,)
    np.testing.assert_array_equal(mask, expected)


def test_band_channels_edges(make_rmf, synthetic):
    rmf = read_rmf(make_rmf(synthetic))
    # channel 0 is [0.1, 0.5]: touching the band at 0.5 does not select it
    e = rmf.e_max[0]
    assert not rmf.band_channels(e, 10.0)[0]
    assert rmf.band_channels(e - 1e-3, 10.0)[0]
    assert rmf.band_channels(0.0, 100.0).all()


@pytest.mark.parametrize("band", [(2.0, 1.0), (1.0, 1.0), (np.nan, 2.0)])
def test_band_channels_rejects_bad_band(pn_rmf, band):
    with pytest.raises(InputError, match="lo < hi"):
        pn_rmf.band_channels(*band)


# --------------------------------------------------------------------------- writing


def test_write_arf_round_trip(tmp_path, pn_arf):
    path = tmp_path / "mod.arf"
    specresp = pn_arf.specresp * 1.1
    write_arf(path, pn_arf.energ_lo, pn_arf.energ_hi, specresp, telescope="XMM", instrument="EPN")
    arf = read_arf(path)
    np.testing.assert_array_equal(arf.energ_lo, pn_arf.energ_lo)
    np.testing.assert_array_equal(arf.energ_hi, pn_arf.energ_hi)
    np.testing.assert_array_equal(arf.specresp, specresp)
    assert (arf.telescope, arf.instrument) == ("XMM", "EPN")
    check_compatible(arf, read_rmf(PN_RMF))
    header = fits.getheader(path, "SPECRESP")
    expected = {
        "HDUCLASS": "OGIP",
        "HDUCLAS1": "RESPONSE",
        "HDUCLAS2": "SPECRESP",
        "HDUVERS": "1.1.0",
        "TELESCOP": "XMM",
        "INSTRUME": "EPN",
        "FILTER": "NONE",
        "TTYPE1": "ENERG_LO",
        "TUNIT1": "keV",
        "TUNIT2": "keV",
        "TTYPE3": "SPECRESP",
        "TUNIT3": "cm**2",
    }
    assert {k: header[k] for k in expected} == expected
    with fits.open(path, checksum=True) as hdul:
        assert hdul[1].verify_checksum() == 1


def test_write_arf_overwrite(tmp_path):
    path = tmp_path / "a.arf"
    write_arf(path, [1.0, 2.0], [2.0, 3.0], [5.0, 6.0])
    with pytest.raises(ResponseError, match=r"a\.arf: file exists; pass overwrite=True"):
        write_arf(path, [1.0, 2.0], [2.0, 3.0], [5.0, 6.0])
    write_arf(path, [1.0, 2.0], [2.0, 3.0], [7.0, 8.0], overwrite=True)
    np.testing.assert_array_equal(read_arf(path).specresp, [7.0, 8.0])


@pytest.mark.parametrize(
    ("specresp", "match"),
    [([1.0, -1.0], "SPECRESP is negative"), ([1.0, np.inf], "SPECRESP is not finite")],
)
def test_write_arf_rejects_bad_area(tmp_path, specresp, match):
    path = tmp_path / "bad.arf"
    with pytest.raises(ResponseError, match=match):
        write_arf(path, [1.0, 2.0], [2.0, 3.0], specresp)
    assert not path.exists()


@pytest.mark.parametrize("first_channel", [0, 1])
@pytest.mark.parametrize("sparse", [False, True])
def test_write_rmf_round_trip(tmp_path, synthetic, first_channel, sparse):
    path = tmp_path / "w.rmf"
    dense = synthetic.dense
    matrix = scipy.sparse.csr_array(dense) if sparse else dense
    write_rmf(
        path,
        synthetic.energ_lo,
        synthetic.energ_hi,
        matrix,
        synthetic.e_min,
        synthetic.e_max,
        first_channel=first_channel,
        telescope="TEST",
        instrument="DET",
    )
    rmf = read_rmf(path)
    np.testing.assert_array_equal(rmf.matrix.toarray(), dense)
    np.testing.assert_array_equal(rmf.energ_lo, synthetic.energ_lo)
    np.testing.assert_array_equal(rmf.e_max, synthetic.e_max)
    np.testing.assert_array_equal(rmf.channels, first_channel + np.arange(12))
    assert rmf.first_channel == first_channel
    assert (rmf.telescope, rmf.instrument) == ("TEST", "DET")

    with fits.open(path) as hdul:
        mh, eh = hdul["MATRIX"].header, hdul["EBOUNDS"].header
        data = hdul["MATRIX"].data
        # runs of consecutive channels become groups; unordered input groups come out sorted
        np.testing.assert_array_equal(data["N_GRP"], [0, 1, 2, 3, 0, 1, 2, 1, 0])
        np.testing.assert_array_equal(data["F_CHAN"][3], np.array([1, 4, 10]) + first_channel)
        np.testing.assert_array_equal(data["N_CHAN"][3], [1, 3, 2])
        np.testing.assert_array_equal(data["F_CHAN"][6], np.array([0, 11]) + first_channel)
        assert len(data["MATRIX"][0]) == 0
        for col in ("F_CHAN", "N_CHAN", "MATRIX"):
            assert hdul["MATRIX"].columns[col].format.startswith("P")
        assert mh["TTYPE4"] == "F_CHAN"
        assert (mh["TLMIN4"], mh["TLMAX4"]) == (first_channel, first_channel + 11)
        expected = {
            "HDUCLASS": "OGIP",
            "HDUCLAS1": "RESPONSE",
            "HDUCLAS2": "RSP_MATRIX",
            "HDUCLAS3": "REDIST",
            "DETCHANS": 12,
            "CHANTYPE": "PI",
            "TELESCOP": "TEST",
            "INSTRUME": "DET",
        }
        assert {k: mh[k] for k in expected} == expected
        assert eh["HDUCLAS2"] == "EBOUNDS" and eh["DETCHANS"] == 12
        assert eh["TTYPE1"] == "CHANNEL" and eh["TLMIN1"] == first_channel


def test_write_rmf_full_response_class(tmp_path, synthetic):
    path = tmp_path / "full.rmf"
    write_rmf(
        path,
        synthetic.energ_lo,
        synthetic.energ_hi,
        synthetic.dense * 100.0,
        synthetic.e_min,
        synthetic.e_max,
    )
    assert fits.getheader(path, "MATRIX")["HDUCLAS3"] == "FULL"


def test_write_rmf_bundled_round_trip(tmp_path, pn_rmf):
    path = tmp_path / "pn_copy.rmf"
    write_rmf(
        path,
        pn_rmf.energ_lo,
        pn_rmf.energ_hi,
        pn_rmf.matrix,
        pn_rmf.e_min,
        pn_rmf.e_max,
        first_channel=pn_rmf.first_channel,
    )
    copy = read_rmf(path)
    assert (copy.matrix != pn_rmf.matrix).nnz == 0
    np.testing.assert_array_equal(copy.channels, pn_rmf.channels)


def test_write_rmf_rejects_bad_shapes(tmp_path, synthetic):
    with pytest.raises(ResponseError, match=r"matrix has shape \(9, 11\), expected .*\(9, 12\)"):
        write_rmf(
            tmp_path / "x.rmf",
            synthetic.energ_lo,
            synthetic.energ_hi,
            synthetic.dense[:, :11],
            synthetic.e_min,
            synthetic.e_max,
        )
    with pytest.raises(ResponseError, match="finite and non-negative"):
        write_rmf(
            tmp_path / "x.rmf",
            synthetic.energ_lo,
            synthetic.energ_hi,
            -synthetic.dense,
            synthetic.e_min,
            synthetic.e_max,
        )


# --------------------------------------------------------------------------- in-memory types


def test_dataclasses_copy_and_validate():
    lo = np.array([0.0, 1.0])
    arf = ARF(lo, lo + 1.0, np.array([1.0, 2.0]))
    lo[0] = 5.0  # the ARF holds its own copy
    assert arf.energ_lo[0] == 0.0 and arf.path is None
    with pytest.raises(ResponseError, match=r"<in-memory ARF>, extension SPECRESP: SPECRESP is"):
        ARF([0.0, 1.0], [1.0, 2.0], [1.0, -2.0])
    with pytest.raises(ResponseError, match=r"matrix has shape"):
        RMF([0.0], [1.0], np.ones((1, 3)), [1, 2], [0.0, 1.0], [1.0, 2.0])
    pha = PHA([1, 2, 3], [4, 5, 6], 100.0, backscal=[1.0, 1.0, 0.5])
    assert isinstance(pha.backscal, np.ndarray) and pha.areascal == 1.0
    with pytest.raises(ResponseError, match="EXPOSURE must be > 0"):
        PHA([1], [1], 0.0)


# --------------------------------------------------------------------------- PHA variants


def test_pha_rate_times_exposure(make_pha):
    rate = np.linspace(0.0, 0.7, 8)
    pha = read_pha(make_pha(COUNTS=None, RATE=rate, keywords={"EXPOSURE": 200.0}))
    np.testing.assert_allclose(pha.counts, rate * 200.0)
    assert pha.exposure == 200.0


def test_pha_scales_and_poisserr(make_pha):
    backscal = np.full(8, 0.25)
    pha = read_pha(make_pha(BACKSCAL=backscal, keywords={"AREASCAL": 0.5, "POISSERR": False}))
    np.testing.assert_array_equal(pha.backscal, backscal)
    assert pha.areascal == 0.5 and pha.poisserr is False
    pha = read_pha(make_pha(name="e.pha", STAT_ERR=np.ones(8)))
    assert pha.poisserr is False


def test_check_background_channel_count(make_pha, pn_rmf):
    pha = read_pha(make_pha())
    with pytest.raises(
        ResponseError, match=r"synthetic\.pha has 8 channels but RMF .*pn\.rmf has 4039"
    ):
        check_background(pha, pn_rmf)


def test_check_background_numbering_warns(make_rmf, make_pha, synthetic_single, caplog):
    rmf = read_rmf(make_rmf(synthetic_single, first_channel=0))
    pha = read_pha(make_pha())  # channels 1..8
    with caplog.at_level(logging.WARNING, logger="xrmod.responses"):
        check_background(pha, rmf)
    assert "matched by position" in caplog.text


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("reader", "kind"), [(read_arf, "ARF"), (read_rmf, "RMF"), (read_pha, "PHA")]
)
def test_missing_file(tmp_path, reader, kind):
    with pytest.raises(ResponseError, match=rf"missing\.fits: {kind} file not found"):
        reader(tmp_path / "missing.fits")


def test_garbage_file(tmp_path):
    path = tmp_path / "garbage.rmf"
    path.write_bytes(np.random.default_rng(1).bytes(6000))
    with pytest.raises(ResponseError, match=r"garbage\.rmf: not a readable FITS file") as info:
        read_rmf(path)
    assert info.value.__cause__ is not None
    assert info.value.exit_code == 2


def test_empty_file(tmp_path):
    path = tmp_path / "empty.arf"
    path.write_bytes(b"")
    with pytest.raises(ResponseError, match=r"empty\.arf: not a readable FITS file"):
        read_arf(path)


@pytest.mark.parametrize("fraction", [0.5, 0.99])
def test_truncated_rmf(tmp_path, fraction):
    data = PN_RMF.read_bytes()
    path = tmp_path / "cut.rmf"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ResponseError, match=r"cut\.rmf, extension \w+: file is truncated"):
        read_rmf(path)


def test_truncated_in_header(tmp_path):
    path = tmp_path / "cut.arf"
    path.write_bytes(PN_ARF.read_bytes()[:1000])
    with pytest.raises(ResponseError, match=r"cut\.arf: not a readable FITS file"):
        read_arf(path)


def test_truncated_arf_data(tmp_path):
    path = tmp_path / "cut.arf"
    path.write_bytes(PN_ARF.read_bytes()[:-3000])
    with pytest.raises(ResponseError, match=r"cut\.arf, extension SPECRESP: file is truncated"):
        read_arf(path)


def test_truncated_gzip(tmp_path):
    path = tmp_path / "cut.rmf.gz"
    path.write_bytes(gzip.compress(PN_RMF.read_bytes(), compresslevel=1)[:200_000])
    with pytest.raises(ResponseError, match=r"cut\.rmf\.gz: corrupt or truncated compressed file"):
        read_rmf(path)


def test_wrong_file_kind_lists_extensions():
    with pytest.raises(
        ResponseError,
        match=r"pn\.arf, extension MATRIX: extension missing \(or SPECRESP MATRIX\); "
        r"the file has: PRIMARY, SPECRESP",
    ):
        read_rmf(PN_ARF)
    with pytest.raises(
        ResponseError,
        match=r"pn\.rmf, extension SPECRESP: extension missing; "
        r"the file has: PRIMARY, MATRIX, EBOUNDS",
    ):
        read_arf(PN_RMF)
    with pytest.raises(ResponseError, match=r"extension SPECTRUM: extension missing"):
        read_pha(PN_ARF)


def test_rmf_without_ebounds(make_rmf, synthetic):
    with pytest.raises(
        ResponseError, match=r"extension EBOUNDS: extension missing; the file has: PRIMARY, MATRIX"
    ):
        read_rmf(make_rmf(synthetic, ebounds=False))


@pytest.mark.parametrize("column", ["ENERG_LO", "ENERG_HI", "SPECRESP"])
def test_arf_missing_column(make_arf, column):
    with pytest.raises(
        ResponseError, match=rf"extension SPECRESP: required column {column} missing"
    ):
        read_arf(make_arf(**{column: None}))


@pytest.mark.parametrize("column", ["N_GRP", "F_CHAN", "N_CHAN", "MATRIX", "ENERG_LO"])
def test_rmf_missing_column(make_rmf, synthetic, column):
    path = make_rmf(synthetic, tlmin=False, edit=lambda cols: cols.pop(column))
    with pytest.raises(ResponseError, match=rf"extension MATRIX: required column {column} missing"):
        read_rmf(path)


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ([10.0, -1.0, 3.0, 4.0, 5.0], r"SPECRESP is negative in 1 bin\(s\); first: bin 1"),
        ([10.0, 2.0, np.nan, 4.0, 5.0], r"SPECRESP is not finite in 1 bin\(s\); first: bin 2"),
        ([10.0, 2.0, 3.0, np.inf, 5.0], r"SPECRESP is not finite .* bin 3"),
    ],
)
def test_arf_bad_specresp(make_arf, values, match):
    path = make_arf(SPECRESP=("E", np.array(values), "cm**2"))
    with pytest.raises(ResponseError, match=r"synthetic\.arf, extension SPECRESP: " + match):
        read_arf(path)


@pytest.mark.parametrize(
    ("lo", "hi", "match"),
    [
        ([0.1, 0.3, 0.2, 0.4, 0.5], [0.2, 0.4, 0.3, 0.5, 0.6], r"bin 2 starts at ENERG_LO 0\.2"),
        ([0.1, 0.2, 0.3, 0.4, 0.5], [0.2, 0.3, 0.3, 0.5, 0.6], r"bin 2 has ENERG_HI 0\.3"),
        ([0.6, 0.5, 0.4, 0.3, 0.2], [0.7, 0.6, 0.5, 0.4, 0.3], r"bin 1 starts"),
    ],
)
def test_arf_energies_not_increasing(make_arf, lo, hi, match):
    path = make_arf(ENERG_LO=("D", np.array(lo), "keV"), ENERG_HI=("D", np.array(hi), "keV"))
    with pytest.raises(ResponseError, match=r"extension SPECRESP: energies are not increasing: "):
        read_arf(path)
    with pytest.raises(ResponseError, match=match):
        read_arf(path)


def test_arf_negative_energy(make_arf):
    path = make_arf(ENERG_LO=("D", np.array([-0.1, 0.2, 0.3, 0.4, 0.5]), "keV"))
    with pytest.raises(ResponseError, match=r"ENERG_LO must be finite and >= 0; bin 0"):
        read_arf(path)


def test_arf_energy_unit(make_arf):
    path = make_arf(ENERG_LO=("E", np.array([100.0, 200, 300, 400, 500]), "eV"))
    with pytest.raises(ResponseError, match=r"column ENERG_LO is in 'eV', OGIP responses use keV"):
        read_arf(path)


def test_rmf_energies_not_increasing(make_rmf, synthetic):
    synthetic.energ_hi = synthetic.energ_hi.copy()
    synthetic.energ_hi[4] = synthetic.energ_lo[4]
    with pytest.raises(
        ResponseError, match=r"extension MATRIX: energies are not increasing: bin 4 has ENERG_HI"
    ):
        read_rmf(make_rmf(synthetic))


def test_compatible_bin_count(tmp_path, pn_arf, pn_rmf):
    path = tmp_path / "short.arf"
    write_arf(path, pn_arf.energ_lo[:-5], pn_arf.energ_hi[:-5], pn_arf.specresp[:-5])
    short = read_arf(path)
    with pytest.raises(ResponseError) as info:
        check_compatible(short, pn_rmf)
    message = str(info.value)
    assert str(path) in message and str(PN_RMF) in message
    assert "2062 energy bins" in message and "has 2067" in message


def test_compatible_first_differing_bin(tmp_path, pn_arf, pn_rmf):
    lo, hi = pn_arf.energ_lo.copy(), pn_arf.energ_hi.copy()
    lo[3:] *= 1.001
    hi[2:] *= 1.001
    path = tmp_path / "shifted.arf"
    write_arf(path, lo, hi, pn_arf.specresp)
    with pytest.raises(
        ResponseError,
        match=rf"ARF {re.escape(str(path))} and RMF {re.escape(str(PN_RMF))} have different "
        r"energy grids: first differing bin 2 is",
    ):
        check_compatible(read_arf(path), pn_rmf)


def test_compatible_tolerates_float32_rounding(tmp_path, pn_arf, pn_rmf):
    lo = (pn_arf.energ_lo * (1 + 2e-7)).astype(np.float32)
    hi = (pn_arf.energ_hi * (1 + 2e-7)).astype(np.float32)
    path = tmp_path / "rounded.arf"
    write_arf(path, lo, hi, pn_arf.specresp)
    check_compatible(read_arf(path), pn_rmf)


def test_pha_without_counts_or_rate(make_pha):
    path = make_pha(COUNTS=None, QUALITY=np.zeros(8, dtype=np.int32))
    with pytest.raises(
        ResponseError,
        match=r"synthetic\.pha, extension SPECTRUM: neither COUNTS nor RATE column "
        r"\(columns: CHANNEL, QUALITY\)",
    ):
        read_pha(path)


def test_pha_without_exposure(make_pha):
    with pytest.raises(ResponseError, match=r"extension SPECTRUM: keyword EXPOSURE must be > 0"):
        read_pha(make_pha(keywords={"EXPOSURE": None}))


def test_pha_without_channel(make_pha):
    with pytest.raises(ResponseError, match=r"required column CHANNEL missing"):
        read_pha(make_pha(CHANNEL=None))


def test_pha_type_ii(make_pha):
    with pytest.raises(ResponseError, match=r"type II PHA"):
        read_pha(make_pha(keywords={"HDUCLAS4": "TYPE:II"}))


def test_rmf_detchans_mismatch(make_rmf, synthetic):
    with pytest.raises(
        ResponseError, match=r"extension MATRIX: DETCHANS = 13 but EBOUNDS has 12 channels"
    ):
        read_rmf(make_rmf(synthetic, detchans=13))


def test_rmf_group_past_last_channel(make_rmf, synthetic):
    synthetic.rows[3][2] = (11, [0.2, 0.3])
    with pytest.raises(
        ResponseError,
        match=r"group F_CHAN = 12, N_CHAN = 2 in row 3 runs past the last channel 12",
    ):
        read_rmf(make_rmf(synthetic))


def test_rmf_matrix_shorter_than_groups(make_rmf, synthetic):
    def edit(cols):
        values = list(cols["MATRIX"].array)
        values[2] = values[2][:-1]
        cols["MATRIX"] = fits.Column(name="MATRIX", format="PD()", array=values)

    with pytest.raises(
        ResponseError, match=r"column MATRIX has 2 values in row 2 but N_CHAN sums to 3"
    ):
        read_rmf(make_rmf(synthetic, edit=edit))


def test_rmf_n_grp_beyond_fixed_width(make_rmf, synthetic):
    def edit(cols):
        n_grp = np.array(cols["N_GRP"].array)
        n_grp[5] = 4
        cols["N_GRP"] = fits.Column(name="N_GRP", format="I", array=n_grp)

    with pytest.raises(ResponseError, match=r"column F_CHAN has 3 entries in row 5 but N_GRP = 4"):
        read_rmf(make_rmf(synthetic, chan_layout="fixed", edit=edit))


def test_rmf_non_finite_matrix(make_rmf, synthetic):
    synthetic.rows[5] = [(3, [np.nan])]
    with pytest.raises(
        ResponseError, match=r"column MATRIX has non-finite values \(first in row 5\)"
    ):
        read_rmf(make_rmf(synthetic))


def test_rmf_negative_matrix_is_logged(make_rmf, synthetic, caplog):
    synthetic.rows[5] = [(3, [-1e-9])]
    with caplog.at_level(logging.WARNING, logger="xrmod.responses"):
        rmf = read_rmf(make_rmf(synthetic))
    assert rmf.matrix.toarray()[5, 3] == -1e-9
    assert "MATRIX has 1 negative values" in caplog.text


def test_astropy_warning_is_logged_not_raised(tmp_path, caplog):
    # A keyword with an illegal character makes astropy warn on verification;
    # reading must go on and report it through logging.
    data = bytearray(PN_ARF.read_bytes())
    pos = data.index(b"ARFVERSN")
    data[pos : pos + 8] = b"ARF.VERS"
    path = tmp_path / "odd.arf"
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="xrmod.responses"):
        arf = read_arf(path)
    assert arf.n_energy == 2067
    assert "odd.arf: VerifyWarning: Unfixable error: Illegal keyword name 'ARF.VERS'" in caplog.text
    assert "Verification reported errors" not in caplog.text


def test_trailing_padding_is_logged(tmp_path, caplog):
    path = tmp_path / "padded.arf"
    path.write_bytes(PN_ARF.read_bytes() + bytes(2880))
    with caplog.at_level(logging.WARNING, logger="xrmod.responses"):
        assert read_arf(path).n_energy == 2067
    assert "Unexpected extra padding" in caplog.text


def test_truncated_inside_a_header(tmp_path):
    data = PN_RMF.read_bytes()
    start = data.rindex(b"XTENSION= 'BINTABLE'")  # the EBOUNDS header
    path = tmp_path / "cut.rmf"
    path.write_bytes(data[: start + 500])
    with pytest.raises(
        ResponseError,
        match=r"cut\.rmf: corrupt or truncated FITS file: Error validating header for HDU #2",
    ):
        read_rmf(path)


def test_bzip2_rmf(tmp_path, pn_rmf):
    path = tmp_path / "pn.rmf.bz2"
    path.write_bytes(bz2.compress(PN_RMF.read_bytes(), compresslevel=1))
    assert (read_rmf(path).matrix != pn_rmf.matrix).nnz == 0


def test_read_errors_are_input_errors():
    assert issubclass(ResponseError, InputError)
    assert ResponseError("x").exit_code == 2


def test_copy_of_real_file_in_other_directory(tmp_path):
    # the path recorded is the one given, not a resolved one
    copy = tmp_path / "copy.arf"
    shutil.copy(PN_ARF, copy)
    assert read_arf(str(copy)).path == str(copy)
