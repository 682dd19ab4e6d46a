"""The stellar task: spectra and SEDs to MK classes and Teff, logg, [Fe/H]."""
