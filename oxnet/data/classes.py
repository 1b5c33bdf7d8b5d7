"""Class vocabularies."""

#: The nine thoracic diseases of the OXnet paper (Sec. 3.1), in contiguous-id order.
PAPER_CLASSES = (
    "aortic calcification",
    "cardiomegaly",
    "fracture",
    "mass",
    "nodule",
    "pleural effusion",
    "pneumonia",
    "pneumothorax",
    "tuberculosis",
)
