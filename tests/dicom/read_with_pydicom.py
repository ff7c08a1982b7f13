"""Reads a DICOM file with pydicom (an independent implementation) and prints, as JSON, the
attributes the Rust tests compare, plus the first encapsulated pixel data fragment in hex.
Usage: python3 read_with_pydicom.py FILE"""
import json
import sys

import pydicom
from pydicom.encaps import generate_fragments

ds = pydicom.dcmread(sys.argv[1])
# The first item is the Basic Offset Table; generate_fragments wants what follows it.
offset_table_length = int.from_bytes(ds.PixelData[4:8], "little")
fragments = list(generate_fragments(ds.PixelData[8 + offset_table_length:]))
other_ids = [
    {
        "PatientID": str(item.PatientID),
        "IssuerOfPatientID": str(item.get("IssuerOfPatientID", "")),
        "UniversalEntityID": str(item.IssuerOfPatientIDQualifiersSequence[0].UniversalEntityID),
        "UniversalEntityIDType": str(item.IssuerOfPatientIDQualifiersSequence[0].UniversalEntityIDType),
    }
    for item in ds.get("OtherPatientIDsSequence", [])
]
print(json.dumps({
    "pydicom": pydicom.__version__,
    "PatientName": str(ds.PatientName),
    "PatientID": str(ds.PatientID),
    "SOPClassUID": str(ds.SOPClassUID),
    "TransferSyntaxUID": str(ds.file_meta.TransferSyntaxUID),
    "Rows": int(ds.Rows),
    "Columns": int(ds.Columns),
    "PhotometricInterpretation": str(ds.PhotometricInterpretation),
    "Modality": str(ds.Modality),
    "AcquisitionDateTime": str(ds.AcquisitionDateTime),
    "TimezoneOffsetFromUTC": str(ds.TimezoneOffsetFromUTC),
    "InstitutionName": str(ds.InstitutionName),
    "OtherPatientIDs": other_ids,
    "offset_table_length": offset_table_length,
    "fragments": len(fragments),
    "fragment0": fragments[0].hex() if fragments else "",
}, ensure_ascii=False))
