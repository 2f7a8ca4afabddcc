"""Seeds moto (through the front, by the real AWS names) with the lab's topology, and
writes what it created as KEY=VALUE lines.

    seed.py CONFIG.json OUT.env

Runs inside the `<prefix>-aws` namespace, whose hosts file maps the regional names to
the front, with AWS_CA_BUNDLE set to the lab CA: the same path any client takes.

Creates: the VPC `N.0.0.0/16` with a public subnet `N.0.0/24` and a private one
`N.1.0/24`; the bastion (N.0.2, with a public IP), `web-1` (the private instance, N.1.20,
running) and `web-2` (N.1.21, stopped); an EC2 Instance Connect Endpoint in the private
subnet; a PostgreSQL RDS instance. moto picks the ids; moto's seed makes them repeat.
"""

import json
import os
import sys
import urllib.request

import boto3
from botocore.config import Config


def main():
    config_path, out_path = sys.argv[1], sys.argv[2]
    with open(config_path) as f:
        c = json.load(f)
    net = c["net"]
    # moto's random ids become deterministic per lab (same ids after a restart).
    urllib.request.urlopen(urllib.request.Request(f"http://{c['moto']}/moto-api/seed?a={c['moto_seed']}", method="POST"), timeout=10).read()

    session = boto3.session.Session(aws_access_key_id=c["access_key"], aws_secret_access_key=c["secret_key"], region_name=c["region"])
    cfg = Config(retries={"total_max_attempts": 1})
    ec2 = session.client("ec2", config=cfg)
    rds = session.client("rds", config=cfg)

    def tags(kind, name):
        return [{"ResourceType": kind, "Tags": [{"Key": "Name", "Value": name}, {"Key": "aws-hop-lab", "Value": c["prefix"]}]}]

    vpc = ec2.create_vpc(CidrBlock=f"{net}.0.0/16", TagSpecifications=tags("vpc", f"{c['prefix']}-vpc"))["Vpc"]["VpcId"]
    az = f"{c['region']}a"
    public = ec2.create_subnet(VpcId=vpc, CidrBlock=f"{net}.0.0/24", AvailabilityZone=az, TagSpecifications=tags("subnet", "public"))["Subnet"]["SubnetId"]
    private = ec2.create_subnet(VpcId=vpc, CidrBlock=f"{net}.1.0/24", AvailabilityZone=az, TagSpecifications=tags("subnet", "private"))["Subnet"]["SubnetId"]

    def run(name, subnet, ip, public_ip):
        nic = {"DeviceIndex": 0, "SubnetId": subnet, "PrivateIpAddress": ip, "AssociatePublicIpAddress": public_ip}
        res = ec2.run_instances(ImageId="ami-0abcdef1234567890", InstanceType="t3.micro", MinCount=1, MaxCount=1, NetworkInterfaces=[nic], TagSpecifications=tags("instance", name))
        return res["Instances"][0]["InstanceId"]

    bastion = run("bastion", public, f"{net}.0.2", True)
    web1 = run("web-1", private, f"{net}.1.20", False)
    web2 = run("web-2", private, f"{net}.1.21", False)
    ec2.stop_instances(InstanceIds=[web2])
    bastion_public = ec2.describe_instances(InstanceIds=[bastion])["Reservations"][0]["Instances"][0].get("PublicIpAddress", "")

    eice = ec2.create_instance_connect_endpoint(SubnetId=private, TagSpecifications=tags("instance-connect-endpoint", "eice"))["InstanceConnectEndpoint"]

    rds.create_db_subnet_group(DBSubnetGroupName=f"{c['prefix']}-db", DBSubnetGroupDescription="aws-hop lab", SubnetIds=[private])
    db = rds.create_db_instance(
        DBInstanceIdentifier="lab-postgres",
        Engine="postgres",
        DBInstanceClass="db.t3.micro",
        AllocatedStorage=20,
        MasterUsername=c["db_user"],
        MasterUserPassword=c["db_password"],
        DBName=c["db_name"],
        Port=5432,
        DBSubnetGroupName=f"{c['prefix']}-db",
    )["DBInstance"]
    endpoint = db.get("Endpoint") or rds.describe_db_instances(DBInstanceIdentifier="lab-postgres")["DBInstances"][0]["Endpoint"]

    values = {
        "VPC_ID": vpc,
        "PUBLIC_SUBNET_ID": public,
        "PRIVATE_SUBNET_ID": private,
        "BASTION_ID": bastion,
        "BASTION_PUBLIC_IP": bastion_public,
        "WEB1_ID": web1,
        "WEB2_ID": web2,
        "EICE_ID": eice["InstanceConnectEndpointId"],
        "EICE_DNS": eice["DnsName"],
        "RDS_ID": "lab-postgres",
        "RDS_ENDPOINT": endpoint["Address"],
        "RDS_PORT": str(endpoint["Port"]),
    }
    with open(out_path + ".tmp", "w") as f:
        f.writelines(f"{k}={v}\n" for k, v in values.items())


    os.replace(out_path + ".tmp", out_path)


if __name__ == "__main__":
    main()
